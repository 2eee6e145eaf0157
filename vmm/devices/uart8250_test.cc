#include "vmm/devices/uart8250.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace spore;
using namespace spore::vmm;

namespace {

struct Rig {
  std::string out;
  std::vector<bool> edges;  // every change of the interrupt line
  Uart8250 uart{[this](const char* d, size_t n) { out.append(d, n); }, [this](bool l) { edges.push_back(l); }};

  uint8_t in(uint64_t reg) {
    uint8_t v = 0xaa;
    uart.mmio_read(reg, &v, 1);
    return v;
  }
  void out_(uint64_t reg, uint8_t v) { uart.mmio_write(reg, &v, 1); }
  bool line() const { return !edges.empty() && edges.back(); }
};

}  // namespace

TEST_CASE("uart8250: Linux's probes find a 16550A", "[uart8250]") {
  Rig r;
  // Existence: IER keeps exactly its four enable bits.
  r.out_(Uart8250::kIer, 0);
  CHECK((r.in(Uart8250::kIer) & 0x0f) == 0);
  r.out_(Uart8250::kIer, 0x0f);
  CHECK((r.in(Uart8250::kIer) & 0x0f) == 0x0f);
  r.out_(Uart8250::kIer, 0xff);
  CHECK(r.in(Uart8250::kIer) == 0x0f);  // no XScale UUE bit (0x40)
  r.out_(Uart8250::kIer, 0);
  // Scratch register.
  r.out_(Uart8250::kScr, 0x5a);
  CHECK(r.in(Uart8250::kScr) == 0x5a);
  // FIFO enabled: IIR's top bits both set (16550A, not 16550 or 8250).
  r.out_(Uart8250::kIirFcr, 0x01);
  CHECK(r.in(Uart8250::kIirFcr) >> 6 == 3);
  // With 64-byte mode asked for, IIR >> 5 stays 6 (not a TI16750).
  r.out_(Uart8250::kIirFcr, 0x21);
  CHECK(r.in(Uart8250::kIirFcr) >> 5 == 6);
  r.out_(Uart8250::kIirFcr, 0);
  CHECK(r.in(Uart8250::kIirFcr) >> 6 == 0);
  // The line status of an idle transmitter, never 0xff.
  CHECK(r.in(Uart8250::kLsr) == (Uart8250::kLsrThre | Uart8250::kLsrTemt));
}

TEST_CASE("uart8250: THRE is re-asserted when its interrupt is enabled again, and reading IIR acknowledges it",
          "[uart8250]") {
  Rig r;
  r.out_(Uart8250::kIer, Uart8250::kIerThri);
  CHECK((r.in(Uart8250::kIirFcr) & 0x0f) == Uart8250::kIirThri);
  CHECK((r.in(Uart8250::kIirFcr) & 0x0f) == Uart8250::kIirNoInt);
  r.out_(Uart8250::kIer, 0);
  r.out_(Uart8250::kIer, Uart8250::kIerThri);
  CHECK((r.in(Uart8250::kIirFcr) & 0x0f) == Uart8250::kIirThri);
  // A byte written: the register is empty again at once, so THRE is pending.
  r.out_(Uart8250::kRbrThr, 'x');
  CHECK((r.in(Uart8250::kIirFcr) & 0x0f) == Uart8250::kIirThri);
}

TEST_CASE("uart8250: transmitted bytes reach the sink in order, divisor writes do not", "[uart8250]") {
  Rig r;
  for (char c : std::string("hello\n")) r.out_(Uart8250::kRbrThr, static_cast<uint8_t>(c));
  r.out_(Uart8250::kLcr, Uart8250::kLcrDlab | 0x03);
  r.out_(Uart8250::kRbrThr, 0x01);  // DLL
  r.out_(Uart8250::kIer, 0x00);     // DLM
  CHECK(r.in(Uart8250::kRbrThr) == 0x01);
  r.out_(Uart8250::kLcr, 0x03);
  r.out_(Uart8250::kRbrThr, '!');
  CHECK(r.out == "hello\n!");
  CHECK(r.in(Uart8250::kLcr) == 0x03);
  // Nothing is ever received.
  CHECK((r.in(Uart8250::kLsr) & Uart8250::kLsrDr) == 0);
  CHECK(r.in(Uart8250::kRbrThr) == 0);
}

TEST_CASE("uart8250: the interrupt line follows THRE only while OUT2 is set", "[uart8250]") {
  Rig r;
  r.out_(Uart8250::kIer, Uart8250::kIerThri);
  CHECK(r.edges.empty());  // pending, but OUT2 is off
  r.out_(Uart8250::kMcr, Uart8250::kMcrOut2);
  REQUIRE(r.line());
  // The driver's interrupt handler: reads IIR, writes bytes, the line stays up
  // while THRE keeps coming back, and drops when it stops asking for it.
  CHECK((r.in(Uart8250::kIirFcr) & 0x0f) == Uart8250::kIirThri);
  CHECK_FALSE(r.line());
  r.out_(Uart8250::kRbrThr, 'a');
  CHECK(r.line());
  r.out_(Uart8250::kIer, 0);
  CHECK_FALSE(r.line());
  CHECK(r.out == "a");
  // Edges alternate: never two raises in a row.
  for (size_t i = 1; i < r.edges.size(); i++) CHECK(r.edges[i] != r.edges[i - 1]);
}

TEST_CASE("uart8250: loopback feeds outputs back to the modem status and bytes back to RBR, not to the sink",
          "[uart8250]") {
  Rig r;
  CHECK(r.in(Uart8250::kMsr) == 0xb0);  // DCD, DSR, CTS: a peer that is always ready
  r.out_(Uart8250::kMcr, Uart8250::kMcrLoop | 0x0a);  // RTS, OUT2
  CHECK((r.in(Uart8250::kMsr) & 0xf0) == 0x90);      // CTS, DCD
  r.out_(Uart8250::kMcr, Uart8250::kMcrLoop | 0x05);  // DTR, OUT1
  CHECK((r.in(Uart8250::kMsr) & 0xf0) == 0x60);      // DSR, RI
  r.out_(Uart8250::kIer, Uart8250::kIerThri | 0x01);
  r.out_(Uart8250::kRbrThr, 0x42);
  CHECK((r.in(Uart8250::kLsr) & Uart8250::kLsrDr) != 0);
  CHECK((r.in(Uart8250::kIirFcr) & 0x0f) == Uart8250::kIirRdi);
  CHECK(r.in(Uart8250::kRbrThr) == 0x42);
  CHECK((r.in(Uart8250::kLsr) & Uart8250::kLsrDr) == 0);
  CHECK(r.out.empty());
  CHECK(r.edges.empty());  // loopback keeps the interrupt inside
}

TEST_CASE("uart8250: state survives save and load, and a restore re-drives the line", "[uart8250]") {
  Rig r;
  r.out_(Uart8250::kMcr, Uart8250::kMcrOut2);
  r.out_(Uart8250::kIer, Uart8250::kIerThri);
  r.out_(Uart8250::kScr, 7);
  r.out_(Uart8250::kIirFcr, 1);
  Encoder e;
  Uart8250::save(e, r.uart.state());
  std::string bytes = e.take();
  Decoder d(bytes);
  auto s = Uart8250::load(d);
  REQUIRE(s.ok());
  CHECK(d.done());
  Rig q;
  q.uart.restore(*s);
  CHECK(q.line());
  CHECK(q.in(Uart8250::kScr) == 7);
  CHECK((q.in(Uart8250::kIirFcr) & 0xcf) == (Uart8250::kIirFifo | Uart8250::kIirThri));

  Decoder shortd(std::string_view(bytes).substr(0, bytes.size() - 1));
  CHECK_FALSE(Uart8250::load(shortd).ok());
  std::string bad = bytes;
  bad.back() = static_cast<char>(0x80);
  Decoder badd(bad);
  auto b = Uart8250::load(badd);
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().kind == ErrorKind::kCorrupt);
}
