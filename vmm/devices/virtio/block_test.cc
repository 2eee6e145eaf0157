#include "vmm/devices/virtio/block.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

#include "tests/virtio_driver.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::virtio;

namespace {

struct TempImage {
  TempImage(size_t sectors) {
    char tmpl[] = "/tmp/spore-blk-XXXXXX";
    fd = ::mkstemp(tmpl);
    path = tmpl;
    std::string data(sectors * 512, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i / 512);
    REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  }
  ~TempImage() {
    ::close(fd);
    ::unlink(path.c_str());
  }
  int fd;
  std::string path;
};

struct BlkRig {
  explicit BlkRig(const std::string& path, bool ro = true) {
    auto dev = Block::open(path, ro, "test-disk");
    REQUIRE(dev.ok());
    auto t = MmioTransport::create(std::move(*dev), g.mem, *g.loop, std::make_unique<test::CountingIrq>(&irqs));
    REQUIRE(t.ok());
    transport = std::move(*t);
    drv = std::make_unique<test::TestDriver>(g, *transport);
    drv->begin((1ull << 32) | (ro ? (1ull << 5) : (1ull << 9)) | (1ull << 2));
    drv->setup_queue(0, 16);
    drv->driver_ok();
  }
  // Sends a request; returns (status byte, data read).
  std::pair<uint8_t, std::string> request(uint32_t type, uint64_t sector, uint32_t data_len,
                                          const std::string& out_data = "") {
    uint64_t hdr = g.alloc(16);
    uint32_t t = type, res = 0;
    std::memcpy(g.host(hdr), &t, 4);
    std::memcpy(g.host(hdr + 4), &res, 4);
    std::memcpy(g.host(hdr + 8), &sector, 8);
    uint64_t data = g.alloc(std::max<uint32_t>(data_len, 1));
    uint64_t status = g.alloc(1);
    *g.host(status) = 0xee;
    std::vector<test::Buf> bufs = {{hdr, 16, false}};
    if (!out_data.empty()) {
      std::memcpy(g.host(data), out_data.data(), out_data.size());
      bufs.push_back({data, static_cast<uint32_t>(out_data.size()), false});
    } else if (data_len) {
      bufs.push_back({data, data_len, true});
    }
    bufs.push_back({status, 1, true});
    drv->add(0, bufs);
    drv->kick(0);
    REQUIRE(drv->used(0).size() == 1);
    return {*g.host(status), std::string(reinterpret_cast<char*>(g.host(data)), data_len)};
  }

  test::TestGuest g;
  int irqs = 0;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<test::TestDriver> drv;
};

}  // namespace

TEST_CASE("virtio-blk reads sectors and reports capacity", "[virtio][blk]") {
  TempImage img(8);
  BlkRig r(img.path);
  uint8_t cap[8];
  r.transport->mmio_read(0x100, cap, 8);
  uint64_t sectors;
  std::memcpy(&sectors, cap, 8);
  CHECK(sectors == 8);
  auto [st, data] = r.request(0, 3, 1024);
  CHECK(st == 0);
  CHECK(data[0] == 3);
  CHECK(data[512] == 4);
}

TEST_CASE("virtio-blk refuses reads past the end", "[virtio][blk]") {
  TempImage img(8);
  BlkRig r(img.path);
  CHECK(r.request(0, 7, 1024).first == 1);
  CHECK(r.request(0, ~0ull / 512, 512).first == 1);
  CHECK(r.request(0, 8, 0).first == 0);  // empty read at the end is fine
}

TEST_CASE("virtio-blk read-only disks refuse writes, writable ones store them", "[virtio][blk]") {
  TempImage img(8);
  {
    BlkRig r(img.path, true);
    CHECK(r.request(1, 0, 0, std::string(512, 'w')).first == 1);
  }
  char c;
  REQUIRE(::pread(img.fd, &c, 1, 0) == 1);
  CHECK(c == 0);
  {
    BlkRig r(img.path, false);
    CHECK(r.request(1, 0, 0, std::string(512, 'w')).first == 0);
  }
  REQUIRE(::pread(img.fd, &c, 1, 0) == 1);
  CHECK(c == 'w');
}

TEST_CASE("virtio-blk answers GET_ID and rejects unknown requests", "[virtio][blk]") {
  TempImage img(8);
  BlkRig r(img.path);
  auto [st, id] = r.request(8, 0, 20);
  CHECK(st == 0);
  CHECK(std::string(id.c_str()) == "test-disk");
  CHECK(r.request(99, 0, 0).first == 2);
}
