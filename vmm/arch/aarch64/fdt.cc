#include "vmm/arch/aarch64/fdt.h"

#include <libfdt.h>

#include "base/strings.h"
#include "vmm/arch/aarch64/layout.h"

namespace spore::vmm::aarch64 {
namespace {

constexpr uint32_t kPhandleGic = 1;
constexpr uint32_t kPhandleClock = 2;

constexpr uint32_t kGicSpi = 0;
constexpr uint32_t kGicPpi = 1;
constexpr uint32_t kIrqEdgeRising = 1;
constexpr uint32_t kIrqLevelHigh = 4;

// Sequential-write FDT builder that latches the first libfdt error.
class Writer {
 public:
  explicit Writer(size_t size) : buf_(size) { check(fdt_create(buf_.data(), static_cast<int>(size))); }

  void begin(const std::string& name) { check(fdt_begin_node(buf_.data(), name.c_str())); }
  void end() { check(fdt_end_node(buf_.data())); }
  void prop(const char* name, const void* data, size_t len) {
    check(fdt_property(buf_.data(), name, data, static_cast<int>(len)));
  }
  void prop_str(const char* name, const std::string& v) { check(fdt_property_string(buf_.data(), name, v.c_str())); }
  // A string list: NUL-separated.
  void prop_strs(const char* name, std::initializer_list<const char*> vs) {
    std::string s;
    for (const char* v : vs) {
      s += v;
      s.push_back('\0');
    }
    prop(name, s.data(), s.size());
  }
  void prop_u32(const char* name, uint32_t v) { check(fdt_property_u32(buf_.data(), name, v)); }
  void prop_u64(const char* name, uint64_t v) { check(fdt_property_u64(buf_.data(), name, v)); }
  void prop_cells(const char* name, std::initializer_list<uint32_t> cells) {
    std::vector<fdt32_t> be;
    for (uint32_t c : cells) be.push_back(cpu_to_fdt32(c));
    prop(name, be.data(), be.size() * sizeof(fdt32_t));
  }
  // reg = <addr size> with #address-cells = #size-cells = 2.
  void prop_reg64(std::initializer_list<std::pair<uint64_t, uint64_t>> ranges) {
    std::vector<fdt32_t> be;
    for (auto [a, s] : ranges) {
      be.push_back(cpu_to_fdt32(static_cast<uint32_t>(a >> 32)));
      be.push_back(cpu_to_fdt32(static_cast<uint32_t>(a)));
      be.push_back(cpu_to_fdt32(static_cast<uint32_t>(s >> 32)));
      be.push_back(cpu_to_fdt32(static_cast<uint32_t>(s)));
    }
    prop("reg", be.data(), be.size() * sizeof(fdt32_t));
  }
  void prop_empty(const char* name) { prop(name, nullptr, 0); }

  Result<std::vector<uint8_t>> finish() {
    check(fdt_finish(buf_.data()));
    if (err_) return make_error(ErrorKind::kInternal, strfmt("device tree: %s", fdt_strerror(err_)));
    buf_.resize(fdt_totalsize(buf_.data()));
    return std::move(buf_);
  }
  void start_tree() {
    check(fdt_finish_reservemap(buf_.data()));
    begin("");
  }

 private:
  void check(int r) {
    if (r < 0 && !err_) err_ = r;
  }
  std::vector<uint8_t> buf_;
  int err_ = 0;
};

}  // namespace

Result<std::vector<uint8_t>> build_fdt(const FdtConfig& c) {
  if (c.vcpus == 0 || c.vcpus > kMaxVcpus) return make_error(ErrorKind::kUsage, "bad vCPU count");
  Writer w(64 << 10);
  w.start_tree();
  w.prop_str("compatible", "linux,dummy-virt");
  w.prop_str("model", "spore,aarch64-v1");
  w.prop_u32("#address-cells", 2);
  w.prop_u32("#size-cells", 2);
  w.prop_u32("interrupt-parent", kPhandleGic);

  w.begin("chosen");
  w.prop_str("bootargs", c.cmdline);
  w.prop_str("stdout-path", strfmt("/pl011@%llx", static_cast<unsigned long long>(kUartBase)));
  if (c.initrd_end > c.initrd_start) {
    w.prop_u64("linux,initrd-start", c.initrd_start);
    w.prop_u64("linux,initrd-end", c.initrd_end);
  }
  if (!c.rng_seed.empty()) w.prop("rng-seed", c.rng_seed.data(), c.rng_seed.size());
  w.end();

  w.begin(strfmt("memory@%llx", static_cast<unsigned long long>(kRamBase)));
  w.prop_str("device_type", "memory");
  w.prop_reg64({{kRamBase, c.ram_size}});
  w.end();

  w.begin("cpus");
  w.prop_u32("#address-cells", 1);
  w.prop_u32("#size-cells", 0);
  for (uint32_t i = 0; i < c.vcpus; i++) {
    w.begin(strfmt("cpu@%llx", static_cast<unsigned long long>(vcpu_mpidr(i))));
    w.prop_str("device_type", "cpu");
    w.prop_str("compatible", "arm,arm-v8");
    w.prop_str("enable-method", "psci");
    w.prop_u32("reg", static_cast<uint32_t>(vcpu_mpidr(i)));
    w.end();
  }
  w.end();

  w.begin("psci");
  w.prop_strs("compatible", {"arm,psci-1.0", "arm,psci-0.2"});
  w.prop_str("method", "hvc");
  w.end();

  w.begin(strfmt("intc@%llx", static_cast<unsigned long long>(kGicDistBase)));
  w.prop_str("compatible", "arm,gic-v3");
  w.prop_u32("#interrupt-cells", 3);
  w.prop_empty("interrupt-controller");
  w.prop_reg64({{kGicDistBase, kGicDistSize}, {kGicRedistBase, kGicRedistSizePerCpu * c.vcpus}});
  w.prop_u32("phandle", kPhandleGic);
  w.end();

  w.begin("timer");
  w.prop_str("compatible", "arm,armv8-timer");
  w.prop_empty("always-on");
  w.prop_cells("interrupts", {kGicPpi, kTimerSecurePpi, kIrqLevelHigh, kGicPpi, kTimerNonSecurePpi, kIrqLevelHigh,
                              kGicPpi, kTimerVirtualPpi, kIrqLevelHigh, kGicPpi, kTimerHypPpi, kIrqLevelHigh});
  w.end();

  w.begin("apb-pclk");
  w.prop_str("compatible", "fixed-clock");
  w.prop_u32("#clock-cells", 0);
  w.prop_u32("clock-frequency", 24'000'000);
  w.prop_str("clock-output-names", "clk24mhz");
  w.prop_u32("phandle", kPhandleClock);
  w.end();

  w.begin(strfmt("pl011@%llx", static_cast<unsigned long long>(kUartBase)));
  w.prop_strs("compatible", {"arm,pl011", "arm,primecell"});
  w.prop_reg64({{kUartBase, kPeriphSize}});
  w.prop_cells("interrupts", {kGicSpi, kUartSpi, kIrqLevelHigh});
  w.prop_cells("clocks", {kPhandleClock, kPhandleClock});
  w.prop_strs("clock-names", {"uartclk", "apb_pclk"});
  w.end();

  w.begin(strfmt("pl031@%llx", static_cast<unsigned long long>(kRtcBase)));
  w.prop_strs("compatible", {"arm,pl031", "arm,primecell"});
  w.prop_reg64({{kRtcBase, kPeriphSize}});
  w.prop_cells("interrupts", {kGicSpi, kRtcSpi, kIrqLevelHigh});
  w.prop_cells("clocks", {kPhandleClock});
  w.prop_strs("clock-names", {"apb_pclk"});
  w.end();

  if (c.generation_device) {
    w.begin(strfmt("generation@%llx", static_cast<unsigned long long>(kGenerationBase)));
    w.prop_str("compatible", "spore,generation");
    w.prop_reg64({{kGenerationBase, kPeriphSize}});
    w.prop_cells("interrupts", {kGicSpi, kGenerationSpi, kIrqEdgeRising});
    w.end();
  }

  for (uint32_t slot : c.virtio_slots) {
    if (slot >= kVirtioSlots) return make_error(ErrorKind::kInternal, "virtio slot out of range");
    w.begin(strfmt("virtio_mmio@%llx", static_cast<unsigned long long>(virtio_mmio_base(slot))));
    w.prop_str("compatible", "virtio,mmio");
    w.prop_reg64({{virtio_mmio_base(slot), kVirtioStride}});
    w.prop_cells("interrupts", {kGicSpi, virtio_spi(slot), kIrqEdgeRising});
    w.prop_empty("dma-coherent");
    w.end();
  }

  w.end();  // root
  auto blob = w.finish();
  if (blob.ok() && blob->size() > kFdtMaxSize) return make_error(ErrorKind::kInternal, "device tree too large");
  return blob;
}

}  // namespace spore::vmm::aarch64
