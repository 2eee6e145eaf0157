#include "base/sha256.h"

#include <catch2/catch.hpp>
#include <string>

using namespace spore;

TEST_CASE("sha256 matches the FIPS 180-4 test vectors", "[base][sha256]") {
  CHECK(digest_hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(digest_hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(digest_hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  CHECK(digest_hex(sha256(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("streaming in odd pieces gives the same digest", "[base][sha256]") {
  std::string data;
  for (int i = 0; i < 1000; i++) data += static_cast<char>(i * 7);
  Digest whole = sha256(data);
  for (size_t step : {1, 3, 63, 64, 65, 200}) {
    Sha256 h;
    for (size_t i = 0; i < data.size(); i += step) h.update(data.data() + i, std::min(step, data.size() - i));
    CHECK(h.finish() == whole);
  }
}

TEST_CASE("digest hex parsing is strict", "[base][sha256]") {
  Digest d = sha256("x");
  CHECK(parse_digest_hex(digest_hex(d)) == d);
  CHECK_FALSE(parse_digest_hex("abc"));
  CHECK_FALSE(parse_digest_hex(std::string(64, 'G')));
  CHECK_FALSE(parse_digest_hex(std::string(64, 'A')));  // lower case only
}
