// Minimal leveled logging to stderr. The level comes from SPORE_LOG
// (error|warn|info|debug); default warn, so tools stay quiet on success.
#pragma once

#include <atomic>
#include <cstdarg>

namespace spore {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

LogLevel log_level();
void set_log_level(LogLevel level);
void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// For conditions a guest can trigger at will: log the first few, then count.
class RateLimit {
 public:
  explicit RateLimit(unsigned burst = 5) : burst_(burst) {}
  bool allow() { return count_.fetch_add(1, std::memory_order_relaxed) < burst_; }

 private:
  unsigned burst_;
  std::atomic<unsigned> count_{0};
};

}  // namespace spore

#define SPORE_LOG(level, ...)                                            \
  do {                                                                   \
    if (static_cast<int>(level) <= static_cast<int>(::spore::log_level())) \
      ::spore::log_message(level, __VA_ARGS__);                          \
  } while (0)
#define LOG_ERROR(...) SPORE_LOG(::spore::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) SPORE_LOG(::spore::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) SPORE_LOG(::spore::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) SPORE_LOG(::spore::LogLevel::kDebug, __VA_ARGS__)

// Logs a guest-triggerable warning at most a few times per call site.
#define LOG_GUEST(...)                                  \
  do {                                                  \
    static ::spore::RateLimit spore_rl_;                \
    if (spore_rl_.allow()) LOG_WARN(__VA_ARGS__);       \
  } while (0)
