#pragma once

#include <cstdint>

namespace torch_ext::bench {

// Heap allocations (malloc, calloc, realloc, hence operator new) made by
// this thread while counting is on.
void start_counting_allocations();
std::int64_t stop_counting_allocations();

} // namespace torch_ext::bench
