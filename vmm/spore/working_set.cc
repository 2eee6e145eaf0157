#include "vmm/spore/working_set.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/codec.h"
#include "base/fd.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

namespace spore::vmm {
namespace {
constexpr char kMagic[8] = {'S', 'P', 'O', 'R', 'W', 'S', 'E', 'T'};
}

std::string encode_working_set(const std::string& states) {
  Encoder e;
  e.bytes(kMagic, sizeof kMagic);
  e.u64(states.size());
  std::string packed((states.size() + 3) / 4, '\0');
  for (size_t i = 0; i < states.size(); i++)
    packed[i / 4] = static_cast<char>(packed[i / 4] | ((states[i] & 3) << (2 * (i % 4))));
  e.bytes(packed.data(), packed.size());
  return e.take();
}

Result<std::string> decode_working_set(std::string_view data, uint64_t pages) {
  Decoder d(data);
  char magic[8];
  const uint64_t bytes = pages / 4 + (pages % 4 != 0);  // (pages + 3) / 4 without overflow
  // (A count the file is too short to hold reads as 0: check ok() too.)
  if (!d.bytes(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0 || d.u64() != pages ||
      !d.ok() || d.remaining() != bytes)
    return make_error(ErrorKind::kCorrupt, "working set does not match the RAM it describes");
  std::string_view packed = d.view(bytes);
  std::string states(pages, '\0');
  for (uint64_t i = 0; i < pages; i++) {
    char s = static_cast<char>((static_cast<uint8_t>(packed[i / 4]) >> (2 * (i % 4))) & 3);
    if (s == 3) return make_error(ErrorKind::kCorrupt, "working set holds an invalid page state");
    states[i] = s;
  }
  // The last byte's unused high bits are 0 (doc/spore-format.md): a file
  // with anything there was not written by encode_working_set.
  if (pages % 4 && static_cast<uint8_t>(packed.back()) >> (2 * (pages % 4)))
    return make_error(ErrorKind::kCorrupt, "working set has bits set past its last page");
  return states;
}

Result<std::string> observe_working_set(const uint8_t* ram, uint64_t size) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file("/proc/self/pagemap", O_RDONLY));
  return observe_working_set(fd.get(), ram, size);
}

Result<std::string> observe_working_set(int pagemap_fd, const uint8_t* ram, uint64_t size) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pages = size / page;
  std::string states(pages, '\0');
  std::vector<uint64_t> buf(4096);
  uint64_t first = reinterpret_cast<uint64_t>(ram) / page;
  for (uint64_t i = 0; i < pages; i += buf.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), pages - i));
    SPORE_TRY(pread_exact(pagemap_fd, buf.data(), n * 8, (first + i) * 8));
    for (size_t k = 0; k < n; k++) {
      uint64_t e = buf[k];
      bool present = e >> 63 & 1, file = e >> 61 & 1;
      // A present anonymous page in a private file mapping is a private
      // copy: the guest wrote it.
      if (present) states[i + k] = file ? 1 : 2;
    }
  }
  return states;
}

void prefetch_working_set(uint8_t* ram, uint64_t size, const std::string& states) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pages = std::min<uint64_t>(size / page, states.size());
  // Runs of equal state, one madvise each.
  for (uint64_t i = 0; i < pages;) {
    char s = states[i];
    uint64_t j = i + 1;
    while (j < pages && states[j] == s) j++;
    if (s) {
      int advice = s == 2 ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
      if (::madvise(ram + i * page, (j - i) * page, advice) < 0 && errno == EINVAL) return;  // kernel too old
    }
    i = j;
  }
}

}  // namespace spore::vmm
