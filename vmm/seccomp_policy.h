// What each thread of the VMM may call once its setup is done: one seccomp
// allow-list per thread role (base/seccomp.h compiles and installs them).
// doc/security.md ("Seccomp") gives the policy with its reasons.
//
// Filters stack: a thread keeps the filters of the thread that created it
// and those it installs later, and a call must pass all of them. So the
// main thread goes from kController (while spore files may still be
// written) to kSession or kMonitor, each a subset of the one before, and
// threads created after that inherit it before adding their own.
#pragma once

#include "base/result.h"
#include "base/seccomp.h"

namespace spore::vmm {

enum class ThreadRole {
  kVcpu,           // runs one vCPU: KVM_RUN and the MMIO exits it returns
  kDevice,         // the event loop: virtqueues, vsock sockets, block I/O
  kPrefetch,       // faults in a resumed spore's working set, then ends
  kController,     // the main thread once the VM runs: may still capture a spore or write a bundle
  kSession,        // the main thread streaming one command's stdio
  kMonitor,        // the daemon's main thread: accepts clients, starts their threads
  kMonitorClient,  // one daemon client: forwards bytes between its socket and the agent
};

const char* thread_role_name(ThreadRole role);

// Descriptors a role's rules name (-1: not used by the role).
struct PolicyFds {
  int vcpu = -1;    // kVcpu: its vCPU
  int vm = -1;      // kVcpu: the VM (interrupt lines)
  int listen = -1;  // kMonitor: the socket it accepts on
};

// The allow-list of a role, for this architecture and process.
seccomp::Policy thread_policy(ThreadRole role, const PolicyFds& fds = {});

// The role's compiled filter in the mode SPORE_SECCOMP asks for (empty when
// off). Compile on a thread that may still call anything (before it or its
// creator is confined).
Result<seccomp::Program> thread_program(ThreadRole role, const PolicyFds& fds = {});

// thread_program + install on the calling thread.
Status confine_this_thread(ThreadRole role, const PolicyFds& fds = {});

// The arch backend's own calls after setup (vmm/arch/<arch>/seccomp.cc).
void add_arch_rules(seccomp::Policy& p, ThreadRole role, const PolicyFds& fds);

}  // namespace spore::vmm
