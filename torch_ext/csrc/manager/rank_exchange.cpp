#include "rank_exchange.h"

#include <exception>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include "error_message.h"

namespace torch_ext::detail {
namespace {

constexpr const char* kPrefix = "torch_ext/checkpoint_manager/";
// Values: a rank's report, the decision, the outcome.
constexpr const char* kWrote = "wrote";
constexpr const char* kFailed = "failed:";
constexpr const char* kCommit = "commit";
constexpr const char* kAbort = "abort:";
constexpr const char* kCommitted = "committed";

std::vector<uint8_t> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

std::string text(const std::vector<uint8_t>& bytes) {
  return {bytes.begin(), bytes.end()};
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

std::string after(const std::string& text, const std::string& prefix) {
  return text.substr(prefix.size());
}

void run_discard(const std::function<void()>& discard) {
  try {
    discard();
  } catch (...) {
    LOG(WARNING) << "CheckpointManager: could not remove a failed save's files: " << message_of(std::current_exception());
  }
}

} // namespace

RankExchange::RankExchange(
    c10::intrusive_ptr<c10d::Store> store,
    int64_t rank,
    int64_t world_size,
    std::chrono::milliseconds timeout)
    : rank_(rank), world_size_(world_size), timeout_(timeout) {
  TORCH_CHECK_VALUE(
      store || world_size_ == 1,
      "CheckpointManager expected a c10d store for world_size ",
      world_size_,
      " (the job's, e.g. torch.distributed's default store), got none");
  if (store) {
    // A TCPStore client holds its connection for the whole of a wait: on the
    // job's own, a save waiting for a late rank would stall every other use
    // of the store. A clone is a second connection to the same server.
    try {
      store_ = store->clone();
    } catch (...) {
      store_ = std::move(store); // a store that cannot clone itself (a Python one)
    }
    const int64_t constructed = store_->add(std::string(kPrefix) + "instances", 1);
    prefix_ = kPrefix + std::to_string((constructed - 1) / world_size_) + "/";
  }
}

std::string RankExchange::key(int64_t sequence, const std::string& name) const {
  return prefix_ + std::to_string(sequence) + "/" + name;
}

void RankExchange::start_together(const std::string& what) {
  if (!store_) {
    return;
  }
  const std::string ready = prefix_ + "ready";
  if (rank_ == 0) {
    store_->set(ready, bytes(kWrote));
    return;
  }
  try {
    store_->wait({ready}, timeout_);
  } catch (...) {
    TORCH_CHECK(
        false,
        "CheckpointManager: rank ",
        rank_,
        " waited ",
        timeout_.count(),
        " ms for rank 0 to ",
        what,
        ", expected rank 0 to construct its manager too: ",
        message_of(std::current_exception()));
  }
}

RankExchange::Outcome RankExchange::agree(
    int64_t sequence,
    const std::optional<std::string>& error,
    const std::function<void()>& commit,
    const std::function<void()>& discard) {
  if (!store_) {
    if (error) {
      run_discard(discard);
      return {error};
    }
    try {
      commit();
    } catch (...) {
      run_discard(discard);
      return {"rank 0 could not commit it: " + message_of(std::current_exception())};
    }
    return {};
  }
  try {
    return rank_ == 0 ? agree_as_leader(sequence, error, commit, discard) : agree_as_follower(sequence, error);
  } catch (...) {
    return {"rank " + std::to_string(rank_) + " could not use the store: " + message_of(std::current_exception())};
  }
}

RankExchange::Outcome RankExchange::agree_as_leader(
    int64_t sequence,
    const std::optional<std::string>& error,
    const std::function<void()>& commit,
    const std::function<void()>& discard) {
  std::vector<std::string> reports;
  for (int64_t rank = 1; rank < world_size_; ++rank) {
    reports.push_back(key(sequence, "report/" + std::to_string(rank)));
  }
  std::string failures = error.value_or("");
  auto add_failure = [&failures](const std::string& failure) {
    failures += (failures.empty() ? "" : "; ") + failure;
  };
  bool everyone_reported = true;
  try {
    if (!reports.empty()) {
      store_->wait(reports, timeout_);
    }
  } catch (...) {
    everyone_reported = false;
    const std::string cause = message_of(std::current_exception());
    std::string missing;
    for (int64_t rank = 1; rank < world_size_; ++rank) {
      if (!store_->check({reports[rank - 1]})) {
        missing += (missing.empty() ? "" : ", ") + std::to_string(rank);
      }
    }
    add_failure(
        "rank(s) " + (missing.empty() ? std::string("?") : missing) + " did not report their write within " +
        std::to_string(timeout_.count()) + " ms (the barrier timeout): " + cause);
  }
  if (everyone_reported) {
    for (int64_t rank = 1; rank < world_size_; ++rank) {
      const std::string report = text(store_->get(reports[rank - 1]));
      if (starts_with(report, kFailed)) {
        add_failure(after(report, kFailed));
      }
    }
    // Every rank is past the earlier rounds.
    forget_rounds_before(sequence);
  }

  if (failures.empty()) {
    const std::string decision = decide(sequence, kCommit);
    if (decision != kCommit) {
      return {after(decision, kAbort)}; // a rank gave up waiting first
    }
    std::optional<std::string> failure;
    try {
      commit();
    } catch (...) {
      failure = "rank 0 could not commit it: " + message_of(std::current_exception());
      run_discard(discard);
    }
    store_->set(key(sequence, "outcome"), bytes(failure ? kFailed + *failure : std::string(kCommitted)));
    return {failure};
  }
  const std::string proposed = kAbort + failures;
  const std::string decision = decide(sequence, proposed);
  if (decision == proposed) {
    // No rank has the outcome yet, so none writes its next save meanwhile;
    // a rank that timed out may still be writing this one.
    if (everyone_reported) {
      run_discard(discard);
    }
    store_->set(key(sequence, "outcome"), bytes(kFailed + failures));
  }
  return {after(decision, kAbort)};
}

RankExchange::Outcome RankExchange::agree_as_follower(int64_t sequence, const std::optional<std::string>& error) {
  store_->set(key(sequence, "report/" + std::to_string(rank_)), bytes(error ? kFailed + *error : std::string(kWrote)));
  const std::string outcome_key = key(sequence, "outcome");
  auto wait_for_outcome = [&]() -> std::optional<std::string> {
    try {
      store_->wait({outcome_key}, timeout_);
    } catch (...) {
      return std::nullopt;
    }
    return text(store_->get(outcome_key));
  };
  std::optional<std::string> outcome = wait_for_outcome();
  if (!outcome) {
    const std::string reason = "rank " + std::to_string(rank_) + " waited " + std::to_string(timeout_.count()) +
        " ms (the barrier timeout) for rank 0's decision, which waits for every rank's report";
    const std::string proposed = kAbort + reason;
    const std::string decision = decide(sequence, proposed);
    if (decision == proposed) {
      store_->set(outcome_key, bytes(kFailed + reason));
      return {reason};
    }
    // Rank 0 decided: the outcome follows its commit, or its removal of a
    // failed step's files, which must be over before this rank saves again.
    outcome = wait_for_outcome();
    if (!outcome) {
      return {starts_with(decision, kAbort)
                  ? after(decision, kAbort)
                  : "rank 0 decided to commit it, but did not report the outcome within " +
                      std::to_string(timeout_.count()) + " ms (the barrier timeout)"};
    }
  }
  if (*outcome == kCommitted) {
    return {};
  }
  return {after(*outcome, kFailed)};
}

std::string RankExchange::decide(int64_t sequence, const std::string& decision) {
  // Sets the key only if it is unset, and returns its value either way.
  return text(store_->compareSet(key(sequence, "decision"), {}, bytes(decision)));
}

void RankExchange::forget_rounds_before(int64_t sequence) {
  for (; first_kept_round_ < sequence; ++first_kept_round_) {
    try {
      for (int64_t rank = 1; rank < world_size_; ++rank) {
        store_->deleteKey(key(first_kept_round_, "report/" + std::to_string(rank)));
      }
      store_->deleteKey(key(first_kept_round_, "decision"));
      store_->deleteKey(key(first_kept_round_, "outcome"));
    } catch (...) {
      return; // a store that cannot delete keeps them
    }
  }
}

} // namespace torch_ext::detail
