// virtio-blk behind the mmio transport over a 64-sector disk (read-only or
// writable, the input's first byte decides), driven by a hostile guest
// (fuzz/support/virtio_rig.h). Device operation: one block request laid
// out the way a driver does (header, data segments, status byte), with
// every field the fuzzer's.
#include <fcntl.h>
#include <sys/mman.h>

#include "base/fd.h"
#include "fuzz/support/virtio_rig.h"
#include "vmm/devices/virtio/block.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm::virtio;

namespace {

constexpr uint64_t kSectors = 64;
constexpr uint64_t kDiskSize = kSectors * kBlkSectorSize;

// The disk: a memfd refilled with the same pattern for every input.
int disk_fd() {
  static int fd = [] {
    int f = ::memfd_create("spore-fuzz-disk", MFD_CLOEXEC);
    if (f < 0) fail("memfd_create");
    return f;
  }();
  return fd;
}

bool write_all_at(const std::string& s) { return ::pwrite(disk_fd(), s.data(), s.size(), 0) == ssize_t(s.size()); }

void reset_disk() {
  static const std::string pattern = [] {
    std::string s(kDiskSize, '\0');
    for (size_t i = 0; i < s.size(); i++) s[i] = static_cast<char>(i / kBlkSectorSize + i % 7);
    return s;
  }();
  if (::ftruncate(disk_fd(), kDiskSize) != 0 || !write_all_at(pattern)) fail("cannot reset the disk");
}

bool g_read_only = true;

// Request: u8 type selector (or raw u32), u64 sector, u8 data segments
// (0..3) each u16 len and u8 writable, then whether the status byte is
// there, then str8 bytes for the data written.
void block_request(Input& in, VirtioRig& rig) {
  static constexpr uint32_t kTypes[] = {0, 1, 4, 8, 11, 13};
  uint8_t sel = in.u8();
  uint32_t type = sel < 12 ? kTypes[sel % 6] : in.u32();
  uint8_t sector_sel = in.u8();
  uint64_t sector = sector_sel < 128 ? sector_sel % (kSectors + 2) : in.u64();
  std::vector<VirtioRig::Desc> descs;
  uint64_t hdr = rig.alloc(16);
  std::string h(16, '\0');
  std::memcpy(h.data(), &type, 4);
  std::memcpy(h.data() + 8, &sector, 8);
  rig.put(hdr, h);
  descs.push_back({hdr, 16, 0});
  size_t nseg = in.u8() % 4;
  for (size_t i = 0; i < nseg; i++) {
    uint32_t len = in.u16() % (8 * kBlkSectorSize + 1);
    bool writable = in.flag();
    uint64_t at = rig.alloc(len);
    rig.put(at, in.str8());
    descs.push_back({at, len, static_cast<uint16_t>(writable ? kDescFlagWrite : 0)});
  }
  if (!in.flag()) {
    uint64_t status = rig.alloc(1);
    rig.put(status, "\xee");
    descs.push_back({status, 1, kDescFlagWrite});
  }
  rig.publish_chain(0, descs);
  rig.kick(0);
}

DeviceOps block_ops() {
  DeviceOps ops;
  ops.make = [](vmm::EventLoop&) -> std::unique_ptr<Device> {
    return std::make_unique<Block>(UniqueFd(::fcntl(disk_fd(), F_DUPFD_CLOEXEC, 0)), kDiskSize, g_read_only,
                                   "fuzz-disk-with-a-long-serial");
  };
  ops.op = block_request;
  return ops;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DeviceOps ops = block_ops();
  Input in(data, size);
  g_read_only = in.flag();
  reset_disk();
  VirtioRig rig(ops);
  rig.run(in);
  // A read-only disk stays as it was.
  if (g_read_only) {
    std::string now(kDiskSize, '\0');
    check(::pread(disk_fd(), now.data(), now.size(), 0) == ssize_t(now.size()), "cannot read the disk back");
    for (size_t i = 0; i < now.size(); i++)
      check(now[i] == static_cast<char>(i / kBlkSectorSize + i % 7), "a read-only disk was written");
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  auto request = [](VirtioProgram& p, uint8_t type_sel, uint8_t sector, std::vector<std::pair<uint16_t, bool>> segs,
                    std::string bytes = "") {
    Output& o = p.device().u8(type_sel).u8(sector).u8(static_cast<uint8_t>(segs.size()));
    for (auto [len, w] : segs) o.u16(len).u8(w ? 1 : 0).str8(w ? "" : bytes);
    o.u8(0);  // with a status byte
  };
  for (uint8_t ro : {1, 0}) {
    VirtioProgram p;
    Output head;
    head.u8(ro);
    p.init();
    request(p, 0, 0, {{512, true}});            // read sector 0
    request(p, 0, 63, {{256, true}, {256, true}});  // read the last sector in two pieces
    request(p, 1, 2, {{512, false}}, std::string(200, 'w'));  // write
    request(p, 2, 0, {});                       // flush
    request(p, 3, 0, {{20, true}});             // GET_ID
    request(p, 0, 64, {{512, true}});           // past the end
    request(p, 4, 0, {{8, true}});              // unsupported type
    seeds.add(ro ? "requests_ro" : "requests_rw", head.str() + p.str());
  }
}
