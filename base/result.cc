#include "base/result.h"

namespace spore {

Error errno_error(const std::string& what, int err) {
  ErrorKind kind = ErrorKind::kInternal;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
      kind = ErrorKind::kNotFound;
      break;
    case EACCES:
    case EPERM:
    case ENODEV:
    case ENXIO:
    case ENOSYS:
      kind = ErrorKind::kUnavailable;
      break;
    case ENOSPC:
    case EDQUOT:
      kind = ErrorKind::kUnavailable;  // the host is out of room, not the input at fault
      break;
    case ETIMEDOUT:
      kind = ErrorKind::kTimeout;
      break;
    default:
      break;
  }
  return Error{kind, err, what + ": " + std::strerror(err)};
}

}  // namespace spore
