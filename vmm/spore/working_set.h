// The pages a resumed guest touches, recorded once and prefetched on later
// resumes. After a resume every guest page costs a host page fault (and a
// stage-2 fault) on first touch; doing the host half in bulk, ahead of the
// vCPU, removes most of the page-fault time from the path to the first
// command's output. Kept in the cache next to the RAM file it describes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace spore::vmm {

// 2 bits per page: 0 untouched, 1 read, 2 written (a private copy exists).
std::string encode_working_set(const std::string& states);
Result<std::string> decode_working_set(std::string_view data, uint64_t pages);

// What the mapping [ram, ram+size) has touched so far, from /proc/self/pagemap:
// one state byte per page (as above).
Result<std::string> observe_working_set(const uint8_t* ram, uint64_t size);
// The same through a /proc/self/pagemap the caller opened (a confined
// thread opens no files).
Result<std::string> observe_working_set(int pagemap_fd, const uint8_t* ram, uint64_t size);

// Faults the pages in ahead of the guest: written pages get their private
// copy now (MADV_POPULATE_WRITE), read pages their mapping (MADV_POPULATE_READ).
// Best effort: on kernels without these calls nothing happens.
void prefetch_working_set(uint8_t* ram, uint64_t size, const std::string& states);

}  // namespace spore::vmm
