#include "malloc_counter.h"

#include <cstddef>

// glibc's own entry points: the definitions below interpose malloc for the
// whole process (libtorch and libstdc++'s operator new included) and forward.
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* pointer, std::size_t size);
}

namespace torch_ext::bench {
namespace {

// Initial-exec TLS of the executable: no allocation, usable before main.
thread_local bool t_counting = false;
thread_local std::int64_t t_allocations = 0;

inline void count() {
  if (t_counting) {
    ++t_allocations;
  }
}

} // namespace

void start_counting_allocations() {
  t_allocations = 0;
  t_counting = true;
}

std::int64_t stop_counting_allocations() {
  t_counting = false;
  return t_allocations;
}

} // namespace torch_ext::bench

extern "C" {

void* malloc(std::size_t size) {
  torch_ext::bench::count();
  return __libc_malloc(size);
}

void* calloc(std::size_t count, std::size_t size) {
  torch_ext::bench::count();
  return __libc_calloc(count, size);
}

void* realloc(void* pointer, std::size_t size) {
  torch_ext::bench::count();
  return __libc_realloc(pointer, size);
}

} // extern "C"
