// Runs test cases in child processes forked from the test (libtorch is loaded
// already: a fork, no exec), each case under a memory limit and a timeout,
// so that a crash, a hang or a runaway allocation fails that case instead of
// ending the test run. A child runs a batch of cases one after the other
// (starting a process costs tens of milliseconds on a busy machine, far more
// than a case) and says which it starts, so that the parent knows the case
// that ended it; the cases after it run in the next child.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TORCH_EXT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TORCH_EXT_TEST_SANITIZED 1
#endif
#endif

namespace torch_ext_test {

#if defined(__SANITIZE_THREAD__)
// TSan runs the cases about ten times slower, ASan about three: a kept case
// of 8 MB takes close to 10 s of CPU under ASan.
constexpr unsigned kCaseTimeScale = 10;
#elif defined(__SANITIZE_ADDRESS__)
constexpr unsigned kCaseTimeScale = 3;
#else
constexpr unsigned kCaseTimeScale = 1;
#endif

// What one case may take: 4 GiB of memory, and 10 s of CPU (a busy machine
// does not stretch it) within 120 s (a case blocked in a call uses none).
constexpr uint64_t kCaseMemory = uint64_t{4} << 30;
struct CaseLimits {
  unsigned cpu_seconds = 10 * kCaseTimeScale;
  unsigned seconds = 120 * kCaseTimeScale;
};

// A case returns "" when it holds, else what went wrong.
using Case = std::function<std::string(size_t index)>;

struct CaseFailure {
  size_t index;
  std::string why; // the case's own words, or how its process ended
};

namespace detail {

// The private writable memory this process maps, in bytes (VmData).
inline uint64_t data_size() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmData:", 0) == 0) {
      return std::strtoull(line.c_str() + 7, nullptr, 10) * 1024;
    }
  }
  return 0;
}

inline void limit_memory() {
#ifdef TORCH_EXT_TEST_SANITIZED
  // A sanitizer maps terabytes of shadow memory up front, so no limit on
  // the address space can hold. Its heap is private writable memory, which
  // RLIMIT_DATA counts (shadow included): allow kCaseMemory more than the
  // child starts with.
  const rlim_t limit = data_size() + kCaseMemory;
  const struct rlimit data {limit, limit};
  setrlimit(RLIMIT_DATA, &data);
#else
  const struct rlimit address_space {kCaseMemory, kCaseMemory};
  setrlimit(RLIMIT_AS, &address_space);
#endif
}

// `seconds` of CPU from now: SIGXCPU after.
inline void limit_cpu(unsigned seconds) {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const rlim_t used = static_cast<rlim_t>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + 1;
  struct rlimit cpu {};
  getrlimit(RLIMIT_CPU, &cpu);
  cpu.rlim_cur = std::min<rlim_t>(used + seconds, cpu.rlim_max);
  setrlimit(RLIMIT_CPU, &cpu);
}

inline void write_all(int fd, const std::string& text) {
  for (size_t written = 0; written < text.size();) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n <= 0 && errno != EINTR) {
      return;
    }
    written += n > 0 ? static_cast<size_t>(n) : 0;
  }
}

inline std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) != 0;) {
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      break;
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

inline std::string describe_end(int status, const CaseLimits& limits) {
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    if (signal == SIGALRM) {
      return "still running after " + std::to_string(limits.seconds) + " s (a hang?)";
    }
    if (signal == SIGXCPU) {
      return "more than " + std::to_string(limits.cpu_seconds) + " s of CPU (a hang, or work the file does not bound?)";
    }
    return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status)) + " (a sanitizer's report above?)";
}

constexpr int kCaseFailed = 3;

// Child: runs cases [first, end), announcing each; exits at the first that
// fails.
[[noreturn]] inline void run_batch(const Case& run_case, size_t first, size_t end, const CaseLimits& limits, int out) {
  signal(SIGALRM, SIG_DFL);
  signal(SIGXCPU, SIG_DFL);
  limit_memory();
  for (size_t i = first; i < end; ++i) {
    write_all(out, "case " + std::to_string(i) + "\n");
    alarm(limits.seconds);
    limit_cpu(limits.cpu_seconds);
    std::string why;
    try {
      why = run_case(i);
    } catch (const std::bad_alloc&) {
      why = "std::bad_alloc: it allocated more than " + std::to_string(kCaseMemory >> 30) + " GiB";
    } catch (const std::exception& e) {
      why = std::string("an exception out of the case: ") + e.what();
    }
    if (!why.empty()) {
      write_all(out, "fail\n" + why);
      _exit(kCaseFailed);
    }
  }
  _exit(0);
}

} // namespace detail

// Runs cases 0..count-1, `batch` to a child process, each within `limits`;
// returns those that failed.
inline std::vector<CaseFailure> run_in_children(
    size_t count,
    const Case& run_case,
    size_t batch = 64,
    const CaseLimits& limits = {}) {
  std::vector<CaseFailure> failures;
  for (size_t first = 0; first < count;) {
    const size_t end = std::min(count, first + batch);
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
      failures.push_back({first, std::string("pipe: ") + std::strerror(errno)});
      return failures;
    }
    const pid_t pid = fork();
    if (pid < 0) {
      failures.push_back({first, std::string("fork: ") + std::strerror(errno)});
      return failures;
    }
    if (pid == 0) {
      close(pipe_fds[0]);
      detail::run_batch(run_case, first, end, limits, pipe_fds[1]);
    }
    close(pipe_fds[1]);
    const std::string said = detail::read_all(pipe_fds[0]);
    close(pipe_fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      first = end;
      continue;
    }
    // The last case announced is the one that ended the child.
    const size_t announced = said.rfind("case ");
    const size_t index = announced == std::string::npos ? first : std::stoul(said.substr(announced + 5));
    const size_t fail = said.find("\nfail\n", announced);
    failures.push_back(
        {index,
         WIFEXITED(status) && WEXITSTATUS(status) == detail::kCaseFailed && fail != std::string::npos
             ? said.substr(fail + 6)
             : detail::describe_end(status, limits)});
    first = index + 1;
  }
  return failures;
}

// One case in a child: "" when it holds, else why not.
inline std::string run_in_child(const std::function<std::string()>& body, const CaseLimits& limits = {}) {
  const auto failures = run_in_children(1, [&body](size_t) { return body(); }, 1, limits);
  return failures.empty() ? "" : failures.front().why;
}

} // namespace torch_ext_test
