#include "torch_ext/csrc/manager/rank_exchange.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <ostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "test_threads.h"

namespace {

using namespace std::chrono_literals;
using torch_ext::detail::RankExchange;
using Failure = std::optional<std::string>;

using torch_ext::testing::kWaitLimit;

// A store that forwards to `inner` and counts the waits begun on it and on
// its clones: when a rank starts waiting is seen from outside. A clone
// forwards to a clone of `inner`, as the exchange's clone of a TCPStore is
// a second connection to the same server.
class CountsWaits : public c10d::Store {
 public:
  struct Waits {
    std::mutex mutex;
    std::condition_variable begun;
    int64_t count = 0;
  };

  CountsWaits(c10::intrusive_ptr<c10d::Store> inner, std::shared_ptr<Waits> waits)
      : inner_(std::move(inner)), waits_(std::move(waits)) {}

  // Whether `n` waits have begun within kWaitLimit.
  bool begun(int64_t n) const {
    std::unique_lock<std::mutex> lock(waits_->mutex);
    return waits_->begun.wait_for(lock, kWaitLimit, [&] { return waits_->count >= n; });
  }
  int64_t waits() const {
    std::lock_guard<std::mutex> lock(waits_->mutex);
    return waits_->count;
  }

  c10::intrusive_ptr<c10d::Store> clone() override {
    return c10::make_intrusive<CountsWaits>(inner_->clone(), waits_);
  }
  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    inner_->set(key, value);
  }
  std::vector<uint8_t> compareSet(
      const std::string& key,
      const std::vector<uint8_t>& current,
      const std::vector<uint8_t>& desired) override {
    return inner_->compareSet(key, current, desired);
  }
  std::vector<uint8_t> get(const std::string& key) override {
    return inner_->get(key);
  }
  int64_t add(const std::string& key, int64_t value) override {
    return inner_->add(key, value);
  }
  bool deleteKey(const std::string& key) override {
    return inner_->deleteKey(key);
  }
  bool check(const std::vector<std::string>& keys) override {
    return inner_->check(keys);
  }
  int64_t getNumKeys() override {
    return inner_->getNumKeys();
  }
  void wait(const std::vector<std::string>& keys) override {
    count_wait();
    inner_->wait(keys);
  }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    count_wait();
    inner_->wait(keys, timeout);
  }

 private:
  void count_wait() {
    std::lock_guard<std::mutex> lock(waits_->mutex);
    ++waits_->count;
    waits_->begun.notify_all();
  }

  c10::intrusive_ptr<c10d::Store> inner_;
  std::shared_ptr<Waits> waits_;
};

c10::intrusive_ptr<c10d::TCPStore> tcp_store() {
  c10d::TCPStoreOptions options;
  options.port = 0; // any free one
  options.isServer = true;
  options.waitWorkers = false;
  options.timeout = kWaitLimit;
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
}

// What each call of a rank's exchange did.
struct Calls {
  std::atomic<int> commits{0};
  std::atomic<int> discards{0};
};

// One rank's round, on a thread of its own.
std::future<Failure> agree(
    RankExchange& exchange,
    int64_t sequence,
    Failure error,
    Calls& calls,
    std::function<void()> commit = [] {},
    std::function<void()> discard = [] {}) {
  return std::async(std::launch::async, [&exchange, sequence, error, &calls, commit, discard] {
    return exchange
        .agree(
            sequence,
            error,
            [&] {
              ++calls.commits;
              commit();
            },
            [&] {
              ++calls.discards;
              discard();
            })
        .failure;
  });
}

// What the round ended with, waiting at most kWaitLimit. A round that does
// not end aborts: its thread refers to the test's frame.
Failure outcome_of(std::future<Failure>& round) {
  if (round.wait_for(kWaitLimit) != std::future_status::ready) {
    ADD_FAILURE() << "a rank's round did not end within " << kWaitLimit.count() << " s";
    std::abort();
  }
  return round.get();
}

bool contains(const Failure& failure, const std::string& part) {
  return failure && failure->find(part) != std::string::npos;
}

enum class StoreKind { Hash, TCP };

const char* name_of(StoreKind kind) {
  return kind == StoreKind::Hash ? "HashStore" : "TCPStore";
}

void PrintTo(StoreKind kind, std::ostream* out) {
  *out << name_of(kind);
}

c10::intrusive_ptr<c10d::Store> store_of(StoreKind kind) {
  if (kind == StoreKind::Hash) {
    return c10::make_intrusive<c10d::HashStore>();
  }
  return tcp_store();
}

// Ranks as threads of one process, sharing one c10d store (the exchange
// clones it: a TCPStore's clone is a connection of its own).
class RankExchangeTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  RankExchangeTest()
      : counted_(c10::make_intrusive<CountsWaits>(store_of(GetParam()), std::make_shared<CountsWaits::Waits>())) {}

  // The exchanges of `world_size` ranks, constructed as the ranks'
  // managers construct theirs.
  std::vector<std::unique_ptr<RankExchange>> ranks(
      int64_t world_size,
      std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::vector<std::unique_ptr<RankExchange>> exchanges;
    for (int64_t rank = 0; rank < world_size; ++rank) {
      exchanges.push_back(std::make_unique<RankExchange>(counted_, rank, world_size, timeout));
    }
    return exchanges;
  }

  // Every rank's round `sequence`, rank `r` failing with errors[r] if set.
  std::vector<Failure> round(
      std::vector<std::unique_ptr<RankExchange>>& exchanges,
      int64_t sequence,
      std::vector<Failure> errors,
      std::vector<Calls>& calls) {
    std::vector<std::future<Failure>> rounds;
    for (size_t rank = 0; rank < exchanges.size(); ++rank) {
      rounds.push_back(agree(*exchanges[rank], sequence, errors[rank], calls[rank]));
    }
    std::vector<Failure> failures;
    for (auto& r : rounds) {
      failures.push_back(outcome_of(r));
    }
    return failures;
  }

  // The store every rank is given, counting the waits begun on it.
  c10::intrusive_ptr<CountsWaits> counted_;
};

TEST_P(RankExchangeTest, RankZeroCommitsOnceEveryRankHasReportedAndEveryRankLearnsIt) {
  auto exchanges = ranks(3);
  std::vector<Calls> calls(3);
  auto leader = agree(*exchanges[0], 0, std::nullopt, calls[0]);
  ASSERT_TRUE(counted_->begun(1)) << "rank 0 never waited for the others' reports";
  EXPECT_EQ(calls[0].commits.load(), 0) << "rank 0 committed before the others reported";
  auto first = agree(*exchanges[1], 0, std::nullopt, calls[1]);
  auto second = agree(*exchanges[2], 0, std::nullopt, calls[2]);
  EXPECT_EQ(outcome_of(leader), std::nullopt);
  EXPECT_EQ(outcome_of(first), std::nullopt);
  EXPECT_EQ(outcome_of(second), std::nullopt);
  EXPECT_EQ(calls[0].commits.load(), 1);
  for (const Calls& rank : calls) {
    EXPECT_EQ(rank.discards.load(), 0);
  }
  EXPECT_EQ(calls[1].commits + calls[2].commits, 0) << "only rank 0 commits";
}

TEST_P(RankExchangeTest, FailedRanksFailEveryRankWithTheirErrorsAndRankZeroDiscardsTheStep) {
  auto exchanges = ranks(3);
  std::vector<Calls> calls(3);
  EXPECT_EQ(
      round(exchanges, 0, {std::nullopt, "rank 1 failed", "rank 2 failed"}, calls),
      std::vector<Failure>(3, "rank 1 failed; rank 2 failed"));
  EXPECT_EQ(calls[0].commits.load(), 0);
  EXPECT_EQ(calls[0].discards.load(), 1);
  EXPECT_EQ(calls[1].discards + calls[2].discards, 0) << "only rank 0 discards";

  // Rank 0's own error comes first.
  std::vector<Calls> next(3);
  EXPECT_EQ(
      round(exchanges, 1, {"rank 0 failed", std::nullopt, "rank 2 failed"}, next),
      std::vector<Failure>(3, "rank 0 failed; rank 2 failed"));
  EXPECT_EQ(next[0].commits.load(), 0);
  EXPECT_EQ(next[0].discards.load(), 1);
}

TEST_P(RankExchangeTest, ACommitThatThrowsFailsEveryRankAndIsDiscarded) {
  auto exchanges = ranks(2);
  std::vector<Calls> calls(2);
  auto leader = agree(*exchanges[0], 0, std::nullopt, calls[0], [] {
    throw std::runtime_error("no room for the commit file");
  });
  auto follower = agree(*exchanges[1], 0, std::nullopt, calls[1]);
  const std::string expected = "rank 0 could not commit it: no room for the commit file";
  EXPECT_EQ(outcome_of(leader), Failure(expected));
  EXPECT_EQ(outcome_of(follower), Failure(expected));
  EXPECT_EQ(calls[0].discards.load(), 1);
}

TEST_P(RankExchangeTest, ADiscardThatThrowsLeavesTheOutcomeAsItWas) {
  auto exchanges = ranks(2);
  std::vector<Calls> calls(2);
  auto leader = agree(*exchanges[0], 0, std::nullopt, calls[0], [] {}, [] {
    throw std::runtime_error("cannot remove the step");
  });
  auto follower = agree(*exchanges[1], 0, "rank 1 failed", calls[1]);
  EXPECT_EQ(outcome_of(leader), Failure("rank 1 failed"));
  EXPECT_EQ(outcome_of(follower), Failure("rank 1 failed"));
  EXPECT_EQ(calls[0].discards.load(), 1);
}

TEST_P(RankExchangeTest, RankZeroNamesTheRanksThatDidNotReportWithinTheTimeoutAndTheRoundStaysDecided) {
  auto exchanges = ranks(3, 200ms);
  std::vector<Calls> calls(3);
  auto leader = agree(*exchanges[0], 0, std::nullopt, calls[0]);
  const Failure failure = outcome_of(leader);
  EXPECT_TRUE(contains(failure, "rank(s) 1, 2 did not report their write within 200 ms (the barrier timeout)"))
      << failure.value_or("committed");
  // A rank that timed out may still be writing: nothing is discarded.
  EXPECT_EQ(calls[0].commits.load(), 0);
  EXPECT_EQ(calls[0].discards.load(), 0);
  // The late ranks learn the decision that stands.
  for (int64_t rank = 1; rank < 3; ++rank) {
    auto late = agree(*exchanges[rank], 0, std::nullopt, calls[rank]);
    EXPECT_EQ(outcome_of(late), failure);
  }
  // The next round is a round of its own.
  std::vector<Calls> next(3);
  EXPECT_EQ(round(exchanges, 1, {std::nullopt, std::nullopt, std::nullopt}, next), std::vector<Failure>(3));
  EXPECT_EQ(next[0].commits.load(), 1);
}

TEST_P(RankExchangeTest, ARankWaitingTooLongForRankZerosDecisionAbortsTheRoundForEveryRank) {
  auto exchanges = ranks(2, 200ms);
  std::vector<Calls> calls(2);
  auto follower = agree(*exchanges[1], 0, std::nullopt, calls[1]);
  const Failure failure = outcome_of(follower);
  EXPECT_EQ(
      failure,
      Failure("rank 1 waited 200 ms (the barrier timeout) for rank 0's decision, which waits for every rank's report"));
  // Rank 0, late, finds every report but the decision already taken.
  auto leader = agree(*exchanges[0], 0, std::nullopt, calls[0]);
  EXPECT_EQ(outcome_of(leader), failure);
  EXPECT_EQ(calls[0].commits.load(), 0);
  std::vector<Calls> next(2);
  EXPECT_EQ(round(exchanges, 1, {std::nullopt, std::nullopt}, next), std::vector<Failure>(2));
  EXPECT_EQ(next[0].commits.load(), 1);
}

TEST_P(RankExchangeTest, ExchangesConstructedOneAfterAnotherOnOneStoreDoNotMix) {
  auto first = ranks(2);
  std::vector<Calls> calls(2);
  EXPECT_EQ(round(first, 0, {std::nullopt, "rank 1 failed"}, calls), std::vector<Failure>(2, "rank 1 failed"));
  // The same rounds again, by a second pair on the same store.
  auto second = ranks(2);
  std::vector<Calls> again(2);
  EXPECT_EQ(round(second, 0, {std::nullopt, std::nullopt}, again), std::vector<Failure>(2));
  EXPECT_EQ(again[0].commits.load(), 1);
}

TEST_P(RankExchangeTest, RanksStartOnlyOnceRankZeroHasStarted) {
  auto exchanges = ranks(2);
  auto follower = std::async(std::launch::async, [&] { exchanges[1]->start_together("clean up"); });
  // Rank 1 waits in the store, and has not started, until rank 0 starts.
  const auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
  while (counted_->waits() == 0) {
    ASSERT_EQ(follower.wait_for(1ms), std::future_status::timeout) << "rank 1 started before rank 0";
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "rank 1 never waited for rank 0";
  }
  EXPECT_EQ(follower.wait_for(0ms), std::future_status::timeout) << "rank 1 started before rank 0";
  exchanges[0]->start_together("clean up");
  ASSERT_EQ(follower.wait_for(kWaitLimit), std::future_status::ready);
  follower.get();
}

TEST_P(RankExchangeTest, ARankWithoutRankZeroThrowsAfterTheTimeoutNamingWhatItWaitedFor) {
  auto exchanges = ranks(2, 100ms);
  try {
    exchanges[1]->start_together("clean up '/ckpt'");
    FAIL() << "rank 1 started without rank 0";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    EXPECT_TRUE(contains(
        message,
        "rank 1 waited 100 ms for rank 0 to clean up '/ckpt', expected rank 0 to construct its manager too"))
        << message;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores,
    RankExchangeTest,
    ::testing::Values(StoreKind::Hash, StoreKind::TCP),
    [](const ::testing::TestParamInfo<StoreKind>& info) { return std::string(name_of(info.param)); });

// On a TCPStore client the job shares, a rank waiting for another would hold
// the client's connection for the whole wait: the exchange waits on a clone.
TEST(RankExchangeOnTheJobsStore, AWaitingRankDoesNotHoldUpTheStoreItWasGiven) {
  const c10::intrusive_ptr<c10d::TCPStore> job = tcp_store();
  auto waits = std::make_shared<CountsWaits::Waits>();
  auto counted = c10::make_intrusive<CountsWaits>(job, waits);
  RankExchange leader(counted, 0, 2, std::chrono::seconds(60));
  RankExchange follower(counted, 1, 2, std::chrono::seconds(60));
  std::vector<Calls> calls(2);
  auto leading = agree(leader, 0, std::nullopt, calls[0]);
  ASSERT_TRUE(counted->begun(1)) << "rank 0 never waited for rank 1's report";
  job->set("the job's own use", std::vector<uint8_t>{1});
  // Had it waited behind rank 0's wait, rank 0 would have given up by now.
  EXPECT_EQ(leading.wait_for(0ms), std::future_status::timeout) << "the job's set waited for rank 0's wait to end";
  auto following = agree(follower, 0, std::nullopt, calls[1]);
  EXPECT_EQ(outcome_of(leading), std::nullopt);
  EXPECT_EQ(outcome_of(following), std::nullopt);
  EXPECT_EQ(calls[0].commits.load(), 1);
}

TEST(RankExchangeWithoutAStore, TheOneRankDecidesAlone) {
  RankExchange exchange(nullptr, 0, 1, std::chrono::seconds(1));
  exchange.start_together("clean up"); // nobody to wait for
  Calls committed;
  auto round = agree(exchange, 0, std::nullopt, committed);
  EXPECT_EQ(outcome_of(round), std::nullopt);
  EXPECT_EQ(committed.commits.load(), 1);
  EXPECT_EQ(committed.discards.load(), 0);

  Calls failed;
  round = agree(exchange, 1, "rank 0 failed to write its file", failed);
  EXPECT_EQ(outcome_of(round), Failure("rank 0 failed to write its file"));
  EXPECT_EQ(failed.commits.load(), 0);
  EXPECT_EQ(failed.discards.load(), 1);

  Calls throwing;
  round = agree(exchange, 2, std::nullopt, throwing, [] { throw std::runtime_error("no room"); });
  EXPECT_EQ(outcome_of(round), Failure("rank 0 could not commit it: no room"));
  EXPECT_EQ(throwing.discards.load(), 1);
}

TEST(RankExchangeWithoutAStore, SeveralRanksNeedAStore) {
  try {
    RankExchange exchange(nullptr, 0, 2, std::chrono::seconds(1));
    FAIL() << "two ranks without a store";
  } catch (const c10::ValueError& e) {
    EXPECT_TRUE(contains(std::string(e.what_without_backtrace()), "expected a c10d store for world_size 2"))
        << e.what_without_backtrace();
  }
}

} // namespace
