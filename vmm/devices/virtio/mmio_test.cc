// The virtio-mmio transport driven through its registers, with virtio-rng
// as the simplest device behind it.
#include "vmm/devices/virtio/mmio.h"

#include <catch2/catch.hpp>

#include "tests/virtio_driver.h"
#include "vmm/devices/virtio/rng.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::virtio;

namespace {

constexpr uint64_t kQueueSel = 0x30, kQueueReady = 0x44, kQueueDescLow = 0x80, kQueueDescHigh = 0x84;

struct RngRig {
  RngRig() {
    auto t = MmioTransport::create(std::make_unique<Rng>(), g.mem, *g.loop, std::make_unique<test::CountingIrq>(&irqs));
    REQUIRE(t.ok());
    transport = std::move(*t);
    drv = std::make_unique<test::TestDriver>(g, *transport);
  }
  test::TestGuest g;
  int irqs = 0;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<test::TestDriver> drv;
};

}  // namespace

TEST_CASE("virtio-mmio: a queue whose layout fails its check does not stay ready", "[virtio][mmio]") {
  RngRig r;
  r.drv->begin();
  r.drv->setup_queue(0, 16);
  SECTION("made ready again with a bad layout while the device is live") {
    r.drv->driver_ok();
    REQUIRE((r.drv->status() & kStatusNeedsReset) == 0);
    r.drv->set(kQueueSel, 0);
    r.drv->set(kQueueReady, 0);
    r.drv->set(kQueueDescLow, 0x1000);  // far below guest RAM
    r.drv->set(kQueueDescHigh, 0);
    r.drv->set(kQueueReady, 1);
  }
  SECTION("a bad layout found at DRIVER_OK") {
    r.drv->set(kQueueReady, 0);
    r.drv->set(kQueueDescLow, 0x1000);
    r.drv->set(kQueueDescHigh, 0);
    r.drv->set(kQueueReady, 1);
    r.drv->driver_ok();
  }
  CHECK((r.drv->status() & kStatusNeedsReset) != 0);
  CHECK(r.drv->reg(kQueueReady) == 0);
  CHECK_FALSE(r.transport->queue(0).state().ready);
}

TEST_CASE("virtio-mmio: restore refuses driver features the device does not offer", "[virtio][mmio]") {
  RngRig r;
  r.drv->begin();
  r.drv->setup_queue(0, 16);
  r.drv->driver_ok();
  REQUIRE(r.transport->live());
  TransportSnapshot snap = r.transport->snapshot();

  auto restore_onto_fresh = [&](const TransportSnapshot& s) {
    RngRig fresh;
    return fresh.transport->restore(s);
  };
  SECTION("the snapshot as taken restores") { CHECK(restore_onto_fresh(snap).ok()); }
  SECTION("a feature bit rng does not offer") {
    snap.mmio.driver_features |= 1ull << 28;  // VIRTIO_F_INDIRECT_DESC: not offered
    auto st = restore_onto_fresh(snap);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind == ErrorKind::kCorrupt);
    CHECK_THAT(st.error().message, Catch::Contains("does not offer"));
  }
  SECTION("a live device without VERSION_1 negotiated") {
    snap.mmio.driver_features = 0;
    CHECK_FALSE(restore_onto_fresh(snap).ok());
  }
  SECTION("a live device that never reached FEATURES_OK") {
    snap.mmio.status &= ~kStatusFeaturesOk;
    CHECK_FALSE(restore_onto_fresh(snap).ok());
  }
}
