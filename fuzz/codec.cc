// base/codec: the little-endian decoder under every binary format (agent
// frames, state.bin, bundle tables). The input is a program of reads (first
// byte: how many, then one byte per read) followed by the bytes decoded.
// Checked beyond "no crash": while the decoder is ok, what it returned
// encodes back to exactly the bytes it consumed; once it has failed, it
// stays failed and every later read returns nothing; it never reports more
// than is left.
#include <string>
#include <vector>

#include "base/codec.h"
#include "fuzz/support/fuzz.h"

using namespace spore;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const size_t nops = in.u8() % 32;
  std::string ops = in.bytes(nops);
  const std::string body = in.rest();

  Decoder d(body);
  Encoder e;  // what was decoded, encoded again
  bool failed = false;
  for (char c : ops) {
    const size_t before = d.remaining();
    switch (static_cast<uint8_t>(c) % 8) {
      case 0: { auto v = d.u8(); if (d.ok()) e.u8(v); else if (failed) fuzz::check(v == 0, "u8 after failure"); break; }
      case 1: { auto v = d.u16(); if (d.ok()) e.u16(v); else if (failed) fuzz::check(v == 0, "u16 after failure"); break; }
      case 2: { auto v = d.u32(); if (d.ok()) e.u32(v); else if (failed) fuzz::check(v == 0, "u32 after failure"); break; }
      case 3: { auto v = d.u64(); if (d.ok()) e.u64(v); else if (failed) fuzz::check(v == 0, "u64 after failure"); break; }
      case 4: {
        auto s = d.str();
        if (d.ok()) e.str(s);
        else if (failed) fuzz::check(s.empty(), "str after failure");
        break;
      }
      case 5: {
        auto v = d.strs();
        if (d.ok()) {
          fuzz::check(v.size() <= kMaxCodecListEntries, "strs longer than the limit");
          e.strs(v);
        } else if (failed) {
          fuzz::check(v.empty(), "strs after failure");
        }
        break;
      }
      case 6: {
        char buf[64];
        size_t len = static_cast<uint8_t>(c) >> 3;  // 0..31
        bool ok = d.bytes(buf, len);
        fuzz::check(ok == d.ok(), "bytes() result disagrees with ok()");
        if (ok) e.bytes(buf, len);
        break;
      }
      case 7: {
        size_t len = static_cast<uint8_t>(c) >> 3;
        auto v = d.view(len);
        if (d.ok()) {
          fuzz::check(v.size() == len, "view of the wrong length");
          e.bytes(v.data(), v.size());
        } else if (failed) {
          fuzz::check(v.empty(), "view after failure");
        }
        break;
      }
    }
    fuzz::check(d.remaining() <= before, "remaining() grew");
    if (failed) fuzz::check(!d.ok(), "decoder recovered from a failure");
    failed = !d.ok();
  }
  if (d.ok()) {
    const size_t consumed = body.size() - d.remaining();
    fuzz::check(e.size() == consumed, "decoded values re-encode to a different length");
    fuzz::check(e.take() == body.substr(0, consumed), "decoded values re-encode to different bytes");
    fuzz::check(d.done() == (consumed == body.size()), "done() is wrong");
  } else {
    fuzz::check(d.remaining() == 0 && !d.done(), "failed decoder reports input left");
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  // Program: u8 u16 u32 u64 str strs bytes(8) view(3).
  Encoder body;
  body.u8(7);
  body.u16(0x1234);
  body.u32(0xdeadbeef);
  body.u64(1ull << 40);
  body.str("hello");
  body.strs({"a", "bc", ""});
  body.bytes("12345678", 8);
  body.bytes("xyz", 3);
  std::string prog = {0, 1, 2, 3, 4, 5, static_cast<char>(6 | (8 << 3)), static_cast<char>(7 | (3 << 3))};
  Output o;
  o.u8(static_cast<uint8_t>(prog.size())).bytes(prog).bytes(body.take());
  seeds.add("all_kinds", o.str());
  // A list count the input cannot hold.
  Output big;
  big.u8(1).u8(5).u32(0xffffffff).bytes("abcd");
  seeds.add("huge_list", big.str());
}
