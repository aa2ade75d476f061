#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext::detail {

// How the ranks of a CheckpointManager agree, through the job's c10d store,
// on each save: every rank reports whether it wrote its file, rank 0
// commits only if every rank did, and every rank learns the one outcome.
// Without a store (one rank) the same decisions are taken locally.
//
// Keys live under `torch_ext/<name>/<instance>/`, where the instance counts
// the exchanges of that name the ranks constructed, so that the managers of
// one job (or a manager made again after another) never read each other's
// keys. `who` names the user in errors ("CheckpointManager"). Saves are numbered by a sequence that every rank advances
// once per save, so that a step saved again after a failure is a new round.
class TORCH_EXT_API RankExchange {
 public:
  // Takes the instance number (collective: every rank constructs one).
  RankExchange(
      c10::intrusive_ptr<c10d::Store> store,
      int64_t rank,
      int64_t world_size,
      std::chrono::milliseconds timeout,
      std::string name = "checkpoint_manager",
      std::string who = "CheckpointManager");

  // Before a round's writes: every rank sends `plan` to rank 0, whose
  // `answer` (given every rank's plan, in rank order) returns an answer
  // for each rank; every rank returns its own. Each rank other than 0 makes
  // three store calls. If `answer` throws, or a plan or the answers do not
  // come within the timeout, every rank throws, with why (naming the ranks
  // waited for).
  std::string gather_and_answer(
      int64_t sequence,
      const std::string& plan,
      const std::function<std::vector<std::string>(const std::vector<std::string>& plans)>& answer);

  // Rank 0: its start-up work is over. Other ranks: wait for that, at most
  // the timeout, or throw saying what they waited for (`what`).
  void start_together(const std::string& what);

  struct Outcome {
    // Empty when the step was committed; otherwise why not.
    std::optional<std::string> failure;
  };

  // One save, numbered `sequence`, after this rank's write, which failed with
  // `error` if set. On rank 0, if every rank wrote its file, `commit` runs
  // and its exception is the failure; if any rank failed, `discard` runs
  // (once every rank has reported, before any learns the outcome, so no
  // rank writes the next save meanwhile). A rank that waits longer than
  // the timeout, for the others' reports or for rank 0's decision, ends
  // the round with a failure that names the ranks it waited for.
  Outcome agree(
      int64_t sequence,
      const std::optional<std::string>& error,
      const std::function<void()>& commit,
      const std::function<void()>& discard);
  // The same, each rank that wrote sending `report` (what it wrote) to
  // rank 0, whose `commit` takes every rank's, in rank order.
  Outcome agree(
      int64_t sequence,
      const std::optional<std::string>& error,
      const std::string& report,
      const std::function<void(const std::vector<std::string>& reports)>& commit,
      const std::function<void()>& discard);

 private:
  std::string key(int64_t sequence, const std::string& name) const;
  Outcome agree_as_leader(int64_t sequence, const std::optional<std::string>& error, const std::string& report,
                          const std::function<void(const std::vector<std::string>&)>& commit,
                          const std::function<void()>& discard);
  Outcome agree_as_follower(int64_t sequence, const std::optional<std::string>& error, const std::string& report);
  // Rank 0: waits at most the timeout for the keys `<what>/<rank>` of
  // every other rank; throws naming the ranks still missing.
  void wait_for_ranks(int64_t sequence, const std::string& what);
  // Decides the round (compare-and-set: the first decision stands);
  // returns the decision that stands.
  std::string decide(int64_t sequence, const std::string& decision);
  void forget_rounds_before(int64_t sequence);

  c10::intrusive_ptr<c10d::Store> store_;
  int64_t rank_;
  int64_t world_size_;
  std::chrono::milliseconds timeout_;
  std::string who_;
  std::string prefix_;
  int64_t first_kept_round_ = 0; // rank 0's: older rounds' keys are deleted
};

} // namespace torch_ext::detail
