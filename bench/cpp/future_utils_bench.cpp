// torch_ext's future helpers beside the c10 operations they stand for. Every
// case reports, besides its time, the heap allocations of one operation.
#include <torch_ext/future_utils.h>

#include <benchmark/benchmark.h>

#include "malloc_counter.h"

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;

FuturePtr make_future() {
  return c10::make_intrusive<Future>(c10::NoneType::get());
}

// Times `op`, then counts its allocations over untimed calls. One call first
// warms up per-thread state and grows the heap to what `op` needs.
template <typename Op>
void measure(benchmark::State& state, Op op, int counted_calls = 1000) {
  op();
  for (auto _ : state) {
    op();
  }
  torch_ext::bench::start_counting_allocations();
  for (int i = 0; i < counted_calls; ++i) {
    op();
  }
  const auto allocations = torch_ext::bench::stop_counting_allocations();
  state.counters["allocs_per_op"] =
      static_cast<double>(allocations) / counted_calls;
}

// The anchor: a pending future created and completed, nothing linked.
void BM_CreateAndComplete(benchmark::State& state) {
  measure(state, [] {
    FuturePtr source = make_future();
    source->markCompleted();
    benchmark::DoNotOptimize(source->completed());
  });
}

void BM_Then(benchmark::State& state) {
  measure(state, [] {
    FuturePtr source = make_future();
    FuturePtr child =
        source->then([](Future&) { return c10::IValue(); }, c10::NoneType::get());
    source->markCompleted();
    benchmark::DoNotOptimize(child->completed());
  });
}

void BM_WrapPending(benchmark::State& state) {
  measure(state, [] {
    FuturePtr source = make_future();
    FuturePtr wrapped = torch_ext::wrap_future(source);
    source->markCompleted();
    benchmark::DoNotOptimize(wrapped->completed());
  });
}

// Its floor is BM_CreateAndComplete: the result is a new completed future.
void BM_WrapCompleted(benchmark::State& state) {
  FuturePtr source = make_future();
  source->markCompleted();
  measure(state, [&source] {
    FuturePtr wrapped = torch_ext::wrap_future(source);
    benchmark::DoNotOptimize(wrapped->completed());
  });
}

void BM_WrapNonFuture(benchmark::State& state) {
  const c10::IValue value(1);
  measure(state, [&value] {
    FuturePtr wrapped = torch_ext::wrap_future(value);
    benchmark::DoNotOptimize(wrapped->completed());
  });
}

void BM_AddCallback(benchmark::State& state) {
  measure(state, [] {
    FuturePtr source = make_future();
    int calls = 0;
    source->addCallback([&calls](Future&) { ++calls; });
    source->markCompleted();
    benchmark::DoNotOptimize(calls);
  });
}

void BM_OnComplete(benchmark::State& state) {
  measure(state, [] {
    FuturePtr source = make_future();
    int calls = 0;
    torch_ext::on_complete(source, [&calls](Future&) { ++calls; });
    source->markCompleted();
    benchmark::DoNotOptimize(calls);
  });
}

// Builds a chain of `links` wrapped futures, completes its head and drops it:
// per link, the same work as BM_WrapPending, at depth.
void BM_WrapChain(benchmark::State& state) {
  const auto links = state.range(0);
  measure(
      state,
      [links] {
        FuturePtr head = make_future();
        FuturePtr tail = head;
        for (int64_t i = 0; i < links; ++i) {
          tail = torch_ext::wrap_future(tail);
        }
        head->markCompleted();
        benchmark::DoNotOptimize(tail->completed());
      },
      /*counted_calls=*/1);
  state.counters["allocs_per_op"] /= static_cast<double>(links);
  state.counters["links"] = static_cast<double>(links);
}

BENCHMARK(BM_CreateAndComplete);
BENCHMARK(BM_Then);
BENCHMARK(BM_WrapPending);
BENCHMARK(BM_WrapCompleted);
BENCHMARK(BM_WrapNonFuture);
BENCHMARK(BM_AddCallback);
BENCHMARK(BM_OnComplete);
BENCHMARK(BM_WrapChain)
    ->Arg(1'000)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
