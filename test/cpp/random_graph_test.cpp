// Seeded random graphs: sources, wraps of sources and of wraps, callbacks that
// complete other sources, some wraps completed by hand first, completion
// orders spread over threads, and wraps of futures already complete. Each
// future must complete exactly once; a wrap with None or its parent's very
// error, on the thread that completed its parent.
#include <torch_ext/future_utils.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;

constexpr int kTrials = 1000;
constexpr unsigned kBaseSeed = 20240601;

struct Node {
  FuturePtr future;
  int parent = -1; // -1 for a source
  int root = 0; // the source at the top of its ancestry
  bool by_hand = false;
};

struct Outcome {
  int completions = 0;
  std::thread::id thread;
  std::exception_ptr error;
  bool none_value = false;
};

struct Graph {
  std::mutex mutex;
  std::vector<Node> nodes;
  std::vector<Outcome> outcomes;
  std::vector<std::string> completer_threw;

  void watch(int index) {
    torch_ext::on_complete(nodes[index].future, [this, index](Future& done) {
      std::lock_guard<std::mutex> lock(mutex);
      Outcome& outcome = outcomes[index];
      ++outcome.completions;
      outcome.thread = std::this_thread::get_id();
      outcome.error = done.exception_ptr();
      outcome.none_value = !outcome.error && done.constValue().isNone();
    });
  }

  int add(FuturePtr future, int parent) {
    std::lock_guard<std::mutex> lock(mutex);
    const int root = parent < 0 ? static_cast<int>(nodes.size())
                                : nodes[parent].root;
    nodes.push_back({std::move(future), parent, root});
    outcomes.emplace_back();
    return static_cast<int>(nodes.size()) - 1;
  }
};

void complete(const FuturePtr& source, bool fail, int index) {
  if (fail) {
    source->setError(std::make_exception_ptr(
        std::runtime_error("source " + std::to_string(index) + " failed")));
  } else {
    source->markCompleted(torch::ones({1}));
  }
}

void check_wrap(Graph& graph, int index) {
  const Node& node = graph.nodes[index];
  const Outcome& got = graph.outcomes[index];
  const Outcome& parent = graph.outcomes[node.parent];
  SCOPED_TRACE("wrap " + std::to_string(index) + " of " +
               std::to_string(node.parent));
  EXPECT_EQ(got.completions, 1);
  if (node.by_hand) {
    return; // its own result stands; checked by its children
  }
  EXPECT_EQ(got.thread, parent.thread);
  EXPECT_EQ(got.error, parent.error);
  EXPECT_EQ(got.none_value, parent.error == nullptr);
}

void run_trial(unsigned seed) {
  std::mt19937 rng(seed);
  auto uniform = [&](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(rng);
  };
  Graph graph;
  const int sources = uniform(1, 8);
  const int threads = uniform(1, 4);
  for (int s = 0; s < sources; ++s) {
    graph.watch(graph.add(
        c10::make_intrusive<Future>(c10::TensorType::get()), -1));
  }
  const int wraps = uniform(0, 40);
  for (int w = 0; w < wraps; ++w) {
    const int parent = uniform(0, static_cast<int>(graph.nodes.size()) - 1);
    graph.watch(graph.add(
        torch_ext::wrap_future(graph.nodes[parent].future), parent));
  }
  for (int i = sources; i < static_cast<int>(graph.nodes.size()); ++i) {
    // Not one that a wrap of a node completed by hand already completed.
    if (uniform(0, 9) == 0 && !graph.nodes[i].future->completed()) {
      graph.nodes[i].by_hand = true;
      if (uniform(0, 1)) {
        graph.nodes[i].future->markCompleted();
      } else {
        graph.nodes[i].future->setError(
            std::make_exception_ptr(std::logic_error("by hand")));
      }
    }
  }

  // Each source is completed once: by a thread, or by a callback on a node
  // under an earlier source (so that no source waits on itself).
  std::vector<std::vector<int>> per_thread(threads);
  std::vector<bool> fail(sources);
  for (int s = 0; s < sources; ++s) {
    fail[s] = uniform(0, 2) == 0;
    std::vector<int> earlier;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
      if (graph.nodes[i].root < s) {
        earlier.push_back(i);
      }
    }
    if (!earlier.empty() && uniform(0, 2) == 0) {
      const int trigger = earlier[uniform(0, static_cast<int>(earlier.size()) - 1)];
      FuturePtr source = graph.nodes[s].future;
      const bool fails = fail[s];
      torch_ext::on_complete(
          graph.nodes[trigger].future,
          [source, fails, s](Future&) { complete(source, fails, s); });
    } else {
      per_thread[uniform(0, threads - 1)].push_back(s);
    }
  }
  for (std::vector<int>& order : per_thread) {
    std::shuffle(order.begin(), order.end(), rng);
  }

  std::vector<std::thread> completers;
  for (const std::vector<int>& order : per_thread) {
    completers.emplace_back([&graph, &fail, order] {
      for (int s : order) {
        try {
          complete(graph.nodes[s].future, fail[s], s);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(graph.mutex);
          graph.completer_threw.push_back(e.what());
        }
      }
    });
  }
  for (std::thread& completer : completers) {
    completer.join();
  }

  EXPECT_TRUE(graph.completer_threw.empty()) << graph.completer_threw.front();
  for (int s = 0; s < sources; ++s) {
    EXPECT_EQ(graph.outcomes[s].completions, 1) << "source " << s;
  }
  for (int i = sources; i < static_cast<int>(graph.nodes.size()); ++i) {
    check_wrap(graph, i);
  }

  // A wrap of a complete future is complete on return, on this thread.
  for (int late = uniform(0, 5); late > 0; --late) {
    const int parent = uniform(0, static_cast<int>(graph.nodes.size()) - 1);
    FuturePtr wrapped = torch_ext::wrap_future(graph.nodes[parent].future);
    ASSERT_TRUE(wrapped->completed());
    EXPECT_EQ(wrapped->exception_ptr(), graph.outcomes[parent].error);
  }
}

TEST(RandomGraph, WrapsCompleteOnceWithTheirParentsOutcomeOnItsThread) {
  for (int trial = 0; trial < kTrials; ++trial) {
    const unsigned seed = kBaseSeed + trial;
    SCOPED_TRACE("seed " + std::to_string(seed));
    run_trial(seed);
    if (HasFailure()) {
      break; // one seed's report is enough to replay it
    }
  }
}

} // namespace
