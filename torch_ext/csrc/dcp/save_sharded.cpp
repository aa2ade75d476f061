// save_sharded: what dcp.save with a FileSystemWriter does from several
// ranks. Two rounds through the store: every rank's plan to rank 0, which
// checks them and answers who writes what (before any data is written), then
// every rank's write results to rank 0, which commits `.metadata` only if
// every rank wrote.
#include <torch_ext/dcp_sharded.h>

#include <exception>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/manager/error_message.h"
#include "torch_ext/csrc/manager/rank_exchange.h"

#include "sharded_plan.h"

namespace torch_ext::dcp {
namespace {

using detail::dcp::GlobalPlan;
using detail::dcp::PlannedItem;

// A plan through the store: its items, or why the rank could not plan.
constexpr char kPlanned = 'P';
constexpr char kFailed = 'E';

void check_ranks(const SaveRanks& ranks) {
  TORCH_CHECK_VALUE(
      ranks.world_size >= 1 && ranks.rank >= 0 && ranks.rank < ranks.world_size,
      "save_sharded expected 0 <= rank < world_size, got rank ",
      ranks.rank,
      " of world_size ",
      ranks.world_size);
  TORCH_CHECK_VALUE(ranks.timeout.count() > 0, "save_sharded expected a timeout > 0, got ", ranks.timeout.count(), " ms");
}

// Rank 0's answer to every rank's plan: who writes what. The folder is
// prepared before any rank learns it may write.
std::vector<std::string> answer_plans(const std::vector<std::string>& sent, const std::string& path, GlobalPlan& plan) {
  std::vector<std::vector<PlannedItem>> plans;
  std::string failures;
  for (size_t rank = 0; rank < sent.size(); ++rank) {
    if (!sent[rank].empty() && sent[rank][0] == kPlanned) {
      plans.push_back(detail::dcp::decode_plan(std::string_view(sent[rank]).substr(1)));
    } else {
      failures += (failures.empty() ? "" : "; ") + ("rank " + std::to_string(rank) + ": ") + sent[rank].substr(1);
    }
  }
  TORCH_CHECK_VALUE(failures.empty(), "save_sharded into '", path, "': ", failures);
  plan = detail::dcp::merge_plans(plans, path);
  prepare_folder(path);
  std::vector<std::string> answers;
  for (const std::vector<bool>& writes : plan.writes) {
    answers.push_back(detail::dcp::encode_writes(writes));
  }
  return answers;
}

// Rank 0's commit: `.metadata` with every rank's write results.
void commit(GlobalPlan& plan, const std::vector<std::string>& reports, const std::string& path, bool sync) {
  commit_metadata(path, detail::dcp::join_results(std::move(plan), reports, path), sync);
}

} // namespace

void save_sharded(const std::string& path, const c10::IValue& state_dict, const SaveRanks& ranks, const DcpWriteOptions& options) {
  check_write_options(options);
  check_ranks(ranks);
  // A rank that cannot plan still takes part, so that no rank waits for it.
  std::vector<PlannedItem> items;
  std::string sent;
  try {
    items = detail::dcp::plan_items(state_dict, options.max_chunk_bytes);
    sent = kPlanned + detail::dcp::encode_plan(items);
  } catch (...) {
    sent = kFailed + detail::message_of(std::current_exception());
  }
  detail::RankExchange exchange(ranks.store, ranks.rank, ranks.world_size, ranks.timeout, "dcp_save_sharded", "save_sharded");
  GlobalPlan plan; // rank 0's
  const std::vector<bool> writes = detail::dcp::decode_writes(exchange.gather_and_answer(
      0, sent, [&](const std::vector<std::string>& plans) { return answer_plans(plans, path, plan); }));
  TORCH_INTERNAL_ASSERT(writes.size() == items.size());

  std::vector<SaveItem> to_write;
  for (size_t i = 0; i < items.size(); ++i) {
    if (writes[i]) {
      const PlannedItem& item = items[i];
      ItemIndex index{item.fqn, std::nullopt, std::nullopt};
      if (item.kind != PlannedItem::Kind::Object) {
        index.offset = item.chunk.offsets;
      }
      to_write.push_back(SaveItem{std::move(index), item.value, std::nullopt});
    }
  }
  std::optional<std::string> error;
  std::vector<WriteResult> results;
  try {
    results = write_data_files(path, ranks.rank, to_write, options);
  } catch (...) {
    error = "rank " + std::to_string(ranks.rank) + " could not write its data files: " +
        detail::message_of(std::current_exception());
  }
  const detail::RankExchange::Outcome outcome = exchange.agree(
      0,
      error,
      detail::dcp::encode_results(results),
      [&](const std::vector<std::string>& reports) { commit(plan, reports, path, options.sync); },
      [] {}); // an uncommitted folder is no checkpoint; a late rank may still write into it
  TORCH_CHECK(!outcome.failure, "save_sharded: the checkpoint '", path, "' was not committed: ", outcome.failure.value_or(""));
}

} // namespace torch_ext::dcp
