#include "rank_exchange.h"

#include <exception>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include "error_message.h"

namespace torch_ext::detail {
namespace {

constexpr const char* kPrefix = "torch_ext/";
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

void run_discard(const std::function<void()>& discard, const std::string& who) {
  try {
    discard();
  } catch (...) {
    LOG(WARNING) << who << ": could not remove a failed save's files: " << message_of(std::current_exception());
  }
}

constexpr const char* kAnswer = "answer:";

} // namespace

RankExchange::RankExchange(
    c10::intrusive_ptr<c10d::Store> store,
    int64_t rank,
    int64_t world_size,
    std::chrono::milliseconds timeout,
    std::string name,
    std::string who)
    : rank_(rank), world_size_(world_size), timeout_(timeout), who_(std::move(who)) {
  TORCH_CHECK_VALUE(
      store || world_size_ == 1,
      who_,
      " expected a c10d store for world_size ",
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
    const std::string prefix = kPrefix + name + "/";
    const int64_t constructed = store_->add(prefix + "instances", 1);
    prefix_ = prefix + std::to_string((constructed - 1) / world_size_) + "/";
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
        who_,
        ": rank ",
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
  return agree(sequence, error, "", [&commit](const std::vector<std::string>& /*reports*/) { commit(); }, discard);
}

RankExchange::Outcome RankExchange::agree(
    int64_t sequence,
    const std::optional<std::string>& error,
    const std::string& report,
    const std::function<void(const std::vector<std::string>& reports)>& commit,
    const std::function<void()>& discard) {
  if (!store_) {
    if (error) {
      run_discard(discard, who_);
      return {error};
    }
    try {
      commit({report});
    } catch (...) {
      run_discard(discard, who_);
      return {"rank 0 could not commit it: " + message_of(std::current_exception())};
    }
    return {};
  }
  try {
    return rank_ == 0 ? agree_as_leader(sequence, error, report, commit, discard)
                      : agree_as_follower(sequence, error, report);
  } catch (...) {
    return {"rank " + std::to_string(rank_) + " could not use the store: " + message_of(std::current_exception())};
  }
}

RankExchange::Outcome RankExchange::agree_as_leader(
    int64_t sequence,
    const std::optional<std::string>& error,
    const std::string& report,
    const std::function<void(const std::vector<std::string>&)>& commit,
    const std::function<void()>& discard) {
  std::vector<std::string> written{report};
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
      std::string reported = text(store_->get(reports[rank - 1]));
      if (starts_with(reported, kFailed)) {
        add_failure(after(reported, kFailed));
      }
      written.push_back(after(reported, kWrote));
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
      commit(written);
    } catch (...) {
      failure = "rank 0 could not commit it: " + message_of(std::current_exception());
      run_discard(discard, who_);
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
      run_discard(discard, who_);
    }
    store_->set(key(sequence, "outcome"), bytes(kFailed + failures));
  }
  return {after(decision, kAbort)};
}

RankExchange::Outcome RankExchange::agree_as_follower(
    int64_t sequence,
    const std::optional<std::string>& error,
    const std::string& report) {
  store_->set(key(sequence, "report/" + std::to_string(rank_)), bytes(error ? kFailed + *error : kWrote + report));
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

void RankExchange::wait_for_ranks(int64_t sequence, const std::string& what) {
  std::vector<std::string> keys;
  for (int64_t rank = 1; rank < world_size_; ++rank) {
    keys.push_back(key(sequence, what + "/" + std::to_string(rank)));
  }
  if (keys.empty()) {
    return;
  }
  try {
    store_->wait(keys, timeout_);
  } catch (...) {
    const std::string cause = message_of(std::current_exception());
    std::string missing;
    for (int64_t rank = 1; rank < world_size_; ++rank) {
      if (!store_->check({keys[rank - 1]})) {
        missing += (missing.empty() ? "" : ", ") + std::to_string(rank);
      }
    }
    TORCH_CHECK(
        false,
        "rank(s) ",
        missing.empty() ? std::string("?") : missing,
        " did not send their ",
        what,
        " within ",
        timeout_.count(),
        " ms (the timeout): ",
        cause);
  }
}

std::string RankExchange::gather_and_answer(
    int64_t sequence,
    const std::string& plan,
    const std::function<std::vector<std::string>(const std::vector<std::string>& plans)>& answer) {
  if (!store_) {
    return answer({plan}).at(0);
  }
  const auto answer_key = [&](int64_t rank) { return key(sequence, "answer/" + std::to_string(rank)); };
  if (rank_ != 0) {
    store_->set(key(sequence, "plan/" + std::to_string(rank_)), bytes(plan));
    try {
      store_->wait({answer_key(rank_)}, timeout_);
    } catch (...) {
      TORCH_CHECK(
          false,
          "rank ",
          rank_,
          " waited ",
          timeout_.count(),
          " ms (the timeout) for rank 0's answer to every rank's plan: ",
          message_of(std::current_exception()));
    }
    const std::string answered = text(store_->get(answer_key(rank_)));
    TORCH_CHECK(starts_with(answered, kAnswer), after(answered, kAbort));
    return after(answered, kAnswer);
  }
  std::vector<std::string> answers;
  try {
    wait_for_ranks(sequence, "plan");
    std::vector<std::string> plans{plan};
    for (int64_t rank = 1; rank < world_size_; ++rank) {
      plans.push_back(text(store_->get(key(sequence, "plan/" + std::to_string(rank)))));
    }
    answers = answer(plans);
    TORCH_INTERNAL_ASSERT(answers.size() == static_cast<size_t>(world_size_));
  } catch (...) {
    const std::string why = message_of(std::current_exception());
    for (int64_t rank = 1; rank < world_size_; ++rank) {
      store_->set(answer_key(rank), bytes(kAbort + why));
    }
    throw;
  }
  for (int64_t rank = 1; rank < world_size_; ++rank) {
    store_->set(answer_key(rank), bytes(kAnswer + answers[rank]));
  }
  return answers[0];
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
