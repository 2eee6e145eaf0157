// Errors as values at module boundaries.
//
// An Error carries a kind (which maps to a documented process exit code at
// the CLI edge), an errno when the OS produced it, and a message a user can
// act on. Result<T> is either a T or an Error; Status is Result<void>.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace spore {

enum class ErrorKind {
  kInternal,     // a bug or an unexpected OS failure
  kUsage,        // bad command line or option value
  kNotFound,     // a named input does not exist or cannot be read
  kCorrupt,      // input exists but is malformed, truncated or fails a digest
  kUnavailable,  // the host cannot do it (no /dev/kvm, no permission, missing capability)
  kGuest,        // the guest misbehaved or died
  kTimeout,      // a deadline passed
  kProtocol,     // a peer spoke the protocol wrongly
  kPlatform,     // a spore's platform contract does not hold on this host
  kInterrupted,  // the user interrupted a wait (Ctrl-C, SIGTERM) before there was a command to forward it to
};

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  int sys_errno = 0;
  std::string message;

  // Prefixes context: Error("read x").wrap("loading kernel") -> "loading kernel: read x".
  Error wrap(const std::string& context) && {
    message = context + ": " + message;
    return std::move(*this);
  }
  Error wrap(const std::string& context) const& {
    Error e = *this;
    e.message = context + ": " + message;
    return e;
  }
};

inline Error make_error(ErrorKind kind, std::string message) {
  return Error{kind, 0, std::move(message)};
}

// An error from errno: "what: strerror(errno)". Picks a kind from the errno.
Error errno_error(const std::string& what, int err = errno);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status(); }

}  // namespace spore

// Early return on error. Keep usage to statements; no GNU statement expressions.
#define SPORE_CONCAT_INNER(a, b) a##b
#define SPORE_CONCAT(a, b) SPORE_CONCAT_INNER(a, b)

#define SPORE_TRY(expr)                                      \
  do {                                                       \
    auto spore_try_status_ = (expr);                         \
    if (!spore_try_status_.ok())                             \
      return std::move(spore_try_status_).error();           \
  } while (0)

#define SPORE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).error();     \
  lhs = std::move(tmp).value()

#define SPORE_ASSIGN_OR_RETURN(lhs, expr) \
  SPORE_ASSIGN_OR_RETURN_IMPL(SPORE_CONCAT(spore_result_, __LINE__), lhs, expr)
