// Talking to a running guest's agent: console capture, waiting for the
// agent's HELLO, and running one command. Shared by spore-vm and the stub.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "agent/client.h"
#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"
#include "vmm/machine.h"

namespace spore::vmm {

// How long a running guest's agent may take to accept a session. Generous:
// on an overloaded host (a hundred VMs on two cores, or an emulated host)
// a resumed guest can take tens of seconds to answer.
inline constexpr int kAgentConnectTimeoutMs = 120'000;

// Keeps the tail of the guest's serial console (for error reports) and can
// echo it to stderr as it arrives.
class ConsoleLog {
 public:
  explicit ConsoleLog(bool echo) : echo_(echo) {}
  void write(const char* data, size_t len);
  // The last max_lines complete or partial lines.
  std::string tail(size_t max_lines) const;
  // The same, for a failure report: each line as "  | line\n", so it cannot
  // be mistaken for a message of ours (empty when there was no output).
  std::string report_tail(size_t max_lines) const;

 private:
  bool echo_;
  mutable std::mutex mu_;
  std::string buf_;  // bounded
};

// Accepts the agent's connection to the ready port, once: later connections
// to that port are reset, whoever makes them. Construct before
// Machine::start() so the guest cannot announce itself unheard; the machine
// must outlive it (the destructor removes the listener).
class AgentReady {
 public:
  static Result<std::unique_ptr<AgentReady>> listen(Machine& m);
  ~AgentReady();
  AgentReady(const AgentReady&) = delete;
  AgentReady& operator=(const AgentReady&) = delete;

  // Waits for HELLO, timeout_ms in all from this call (a guest trickling
  // the HELLO's bytes does not extend it). Fails when the machine exits
  // first, or with kInterrupted when SIGINT, SIGTERM, SIGHUP or SIGQUIT
  // arrives on sig_fd (a signalfd, if >= 0; other signals on it are
  // consumed and ignored).
  Result<proto::Hello> wait(int timeout_ms, int sig_fd);

 private:
  explicit AgentReady(Machine& m) : m_(m) {}
  Machine& m_;
  UniqueFd event_;  // written once the connection is accepted
  std::mutex mu_;
  UniqueFd accepted_;
};

// Opens an exec session and runs req with io; the session ends early if the
// machine exits.
Result<agent::ExecOutcome> exec_in_guest(Machine& m, const proto::ExecRequest& req, agent::ExecIo io);

}  // namespace spore::vmm
