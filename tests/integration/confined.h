// Checks that a VMM process runs confined (doc/security.md, "Seccomp").
#pragma once

#include <catch2/catch.hpp>
#include <vector>

#include "tests/integration/harness.h"

namespace spore::itest {

// Every thread of the process carries a seccomp filter and no_new_privs;
// at least min_threads of them were looked at.
inline void check_confined(const std::vector<ThreadConfinement>& threads, size_t min_threads) {
  CHECK(threads.size() >= min_threads);
  for (const auto& t : threads) {
    INFO("thread " << t.tid);
    CHECK(t.seccomp == 2);
    CHECK(t.no_new_privs == 1);
    CHECK(t.filters >= 1);
  }
}

}  // namespace spore::itest
