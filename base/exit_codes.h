// Process exit codes of spore's command-line tools when the failure is the
// tool's own, not the guest command's. doc/exit-codes.md lists them; they
// follow sysexits(3) and timeout(1) so scripts can tell them apart.
#pragma once

#include "base/result.h"

namespace spore {

inline constexpr int kExitUsage = 64;        // bad command line
inline constexpr int kExitDataErr = 65;      // input is corrupt or invalid
inline constexpr int kExitNoInput = 66;      // an input file is missing or unreadable
inline constexpr int kExitUnavailable = 69;  // the host cannot run VMs (KVM missing or forbidden)
inline constexpr int kExitSoftware = 70;     // internal failure, or the guest died unexpectedly
inline constexpr int kExitTempFail = 75;     // the guest did not become ready in time
inline constexpr int kExitProtocol = 76;     // the guest agent spoke the protocol wrongly
inline constexpr int kExitTimeout = 124;     // the command hit --timeout
inline constexpr int kExitCannotRun = 126;   // the command exists but could not be started
inline constexpr int kExitNotFound = 127;    // the command does not exist
inline constexpr int kExitInterrupted = 130; // interrupted while the guest was booting (128 + SIGINT)
// The VMM made a system call its seccomp policy forbids (base/seccomp.h):
// what a shell reports for a process killed by SIGSYS (128 + 31).
inline constexpr int kExitSeccomp = 159;

inline int exit_code_for(const Error& e) {
  switch (e.kind) {
    case ErrorKind::kUsage: return kExitUsage;
    case ErrorKind::kNotFound: return kExitNoInput;
    case ErrorKind::kCorrupt: return kExitDataErr;
    case ErrorKind::kUnavailable:
    case ErrorKind::kPlatform: return kExitUnavailable;
    case ErrorKind::kTimeout: return kExitTempFail;
    case ErrorKind::kProtocol: return kExitProtocol;
    case ErrorKind::kInterrupted: return kExitInterrupted;
    case ErrorKind::kGuest:
    case ErrorKind::kInternal: return kExitSoftware;
  }
  return kExitSoftware;
}

}  // namespace spore
