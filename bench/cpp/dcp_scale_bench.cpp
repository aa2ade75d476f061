// Rank 0's side of a save_sharded commit, and one rank's load planning, at
// thousands of ranks, without ranks: the plans and write results that rank 0
// gets from the store are synthesized (encoded as the ranks encode them),
// then rank 0's own steps run on them, each timed alone. The layout is a
// model of `--tensors` tensors, each split by rows over all `--ranks` ranks
// (one chunk per rank and tensor). The load plans the parts of one rank of a
// job of half as many ranks (each part overlapping two saved chunks) from the
// `.metadata` written.
//
// Prints one JSON line: seconds per phase, the peak RSS (VmHWM) after each,
// and the sizes of the messages and of `.metadata`. Run by
// tools/dcp_scale_report.py (`make bench`) and test/test_benchmarks.py.
#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <torch_ext/dcp.h>
#include <torch_ext/local_shards.h>

#include "torch_ext/csrc/dcp/load_plan.h"
#include "torch_ext/csrc/dcp/sharded_plan.h"

namespace {

namespace dcp = torch_ext::dcp;
namespace detail = torch_ext::detail::dcp;

// Each rank's rows of every tensor, and the tensors' width: a bf16 weight of
// a 4096-wide model.
constexpr int64_t kRowsPerRank = 2;
constexpr int64_t kColumns = 4096;
constexpr c10::ScalarType kDtype = c10::ScalarType::BFloat16;

std::string layer(int64_t tensor) {
  return "layer_" + std::to_string(tensor);
}

std::string fqn(int64_t tensor) {
  return "model." + layer(tensor) + ".weight";
}

// The field `key` of a /proc file such as /proc/self/status (a size in KiB),
// in bytes; -1 if it has none.
int64_t proc_bytes(const char* file, const std::string& key) {
  std::ifstream lines(file);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(key, 0) == 0) {
      return std::stoll(line.substr(key.size())) * 1024;
    }
  }
  return -1;
}

int64_t peak_rss() {
  return proc_bytes("/proc/self/status", "VmHWM:");
}

int64_t available_memory() {
  return proc_bytes("/proc/meminfo", "MemAvailable:");
}

// Starts the peak over (the kernel's "clear_refs" 5) once freed memory is
// back with the kernel, so that the load's peak is its own.
void reset_peak_rss() {
  malloc_trim(0);
  std::ofstream("/proc/self/clear_refs") << "5";
}

// What rank `rank` sends rank 0: its part of every tensor.
std::string plan_of(int64_t rank, int64_t ranks, int64_t tensors) {
  std::vector<detail::PlannedItem> items;
  items.reserve(static_cast<size_t>(tensors));
  for (int64_t t = 0; t < tensors; ++t) {
    items.push_back(detail::PlannedItem{
        fqn(t),
        {std::string("model"), layer(t), std::string("weight")},
        detail::PlannedItem::Kind::Part,
        kDtype,
        {ranks * kRowsPerRank, kColumns},
        dcp::Chunk{{rank * kRowsPerRank, 0}, {kRowsPerRank, kColumns}},
        {}});
  }
  return detail::encode_plan(items);
}

// What rank `rank` reports once it wrote what rank 0 answered (every item of
// its own: no item is replicated), one data file per rank.
std::string report_of(int64_t rank, int64_t tensors) {
  constexpr uint64_t kItemBytes = kRowsPerRank * kColumns * 2;
  std::vector<dcp::WriteResult> results;
  results.reserve(static_cast<size_t>(tensors));
  const std::string file = "__" + std::to_string(rank) + "_0.distcp";
  for (int64_t t = 0; t < tensors; ++t) {
    results.push_back(dcp::WriteResult{
        dcp::ItemIndex{fqn(t), std::vector<int64_t>{rank * kRowsPerRank, 0}, std::nullopt},
        dcp::ItemLocation{file, static_cast<uint64_t>(t) * kItemBytes, kItemBytes, {}}});
  }
  return detail::encode_results(results);
}

// Rank `rank`'s state of a job of `ranks` ranks, each part `rows` rows of
// every tensor, as load_sharded takes it.
c10::impl::GenericDict dict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

c10::IValue target_of(int64_t rank, int64_t rows, int64_t global_rows, int64_t tensors) {
  c10::impl::GenericDict model = dict();
  for (int64_t t = 0; t < tensors; ++t) {
    c10::impl::GenericDict entry = dict();
    entry.insert(
        "weight",
        torch_ext::make_local_shards(
            {torch_ext::Shard{at::zeros({rows, kColumns}, at::dtype(kDtype)), {rank * rows, 0}}}, {global_rows, kColumns}));
    model.insert(layer(t), entry);
  }
  c10::impl::GenericDict state = dict();
  state.insert("model", model);
  return state;
}

int64_t sum_sizes(const std::vector<std::string>& messages, size_t* largest) {
  int64_t total = 0;
  for (const std::string& message : messages) {
    total += static_cast<int64_t>(message.size());
    *largest = std::max(*largest, message.size());
  }
  return total;
}

int run(int64_t ranks, int64_t tensors, const std::string& folder) {
  std::ostringstream json;
  json << "{\"ranks\": " << ranks << ", \"tensors\": " << tensors << ", \"chunks\": " << ranks * tensors
       << ", \"peak_rss_start\": " << peak_rss();
  std::ostringstream phases;
  const auto timed = [&](const char* name, const std::function<void()>& step) {
    const auto start = std::chrono::steady_clock::now();
    step();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    phases << (phases.tellp() > 0 ? ", " : "") << "\"" << name << "\": {\"seconds\": " << took.count()
           << ", \"peak_rss\": " << peak_rss() << "}";
  };

  // What rank 0 holds once it got every plan from the store.
  std::vector<std::string> plans;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    plans.push_back(plan_of(rank, ranks, tensors));
  }
  size_t largest_plan = 0;
  json << ", \"plan_bytes\": " << sum_sizes(plans, &largest_plan) << ", \"largest_plan_bytes\": " << largest_plan;

  // Rank 0's answer to the plans (save_sharded.cpp's answer_plans).
  detail::GlobalPlan plan;
  {
    std::vector<std::vector<detail::PlannedItem>> decoded;
    timed("decode_plans", [&] {
      for (const std::string& sent : plans) {
        decoded.push_back(detail::decode_plan(sent));
      }
    });
    timed("merge_plans", [&] {
      plan = detail::merge_plans(decoded, folder);
      dcp::prepare_folder(folder);
      std::vector<std::string> answers;
      for (const std::vector<bool>& writes : plan.writes) {
        answers.push_back(detail::encode_writes(writes));
      }
    });
  }
  plans.clear();
  plans.shrink_to_fit();

  // Rank 0's commit, once it got every rank's write results.
  std::vector<std::string> reports;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    reports.push_back(report_of(rank, tensors));
  }
  size_t largest_report = 0;
  json << ", \"report_bytes\": " << sum_sizes(reports, &largest_report) << ", \"largest_report_bytes\": " << largest_report;
  dcp::Metadata metadata;
  timed("join_results", [&] { metadata = detail::join_results(std::move(plan), reports, folder); });
  reports.clear();
  reports.shrink_to_fit();
  int64_t pickle_bytes = 0;
  timed("pickle_metadata", [&] { pickle_bytes = static_cast<int64_t>(dcp::pickle_metadata(metadata).size()); });
  timed("commit_metadata", [&] { dcp::commit_metadata(folder, metadata, /*sync=*/true); });
  json << ", \"metadata_bytes\": " << std::filesystem::file_size(std::filesystem::path(folder) / ".metadata")
       << ", \"pickle_bytes\": " << pickle_bytes << ", \"peak_rss_save\": " << peak_rss();
  metadata = dcp::Metadata{};

  // read_metadata holds about 32 bytes per byte of `.metadata` (measured
  // at 1,024 ranks): past the memory there is, the load is left out rather
  // than make the machine swap or kill.
  constexpr int64_t kReadBytesPerFileByte = 40;
  const int64_t needed = static_cast<int64_t>(std::filesystem::file_size(std::filesystem::path(folder) / ".metadata")) *
      kReadBytesPerFileByte;
  if (needed > available_memory()) {
    json << ", \"load_skipped\": \"read_metadata would need about " << (needed >> 30) << " GiB, "
         << (available_memory() >> 30) << " GiB are available\", \"phases\": {" << phases.str() << "}}";
    std::cout << json.str() << std::endl;
    return 0;
  }

  // A load by one rank of a job of half as many ranks.
  reset_peak_rss();
  const int64_t load_ranks = std::max<int64_t>(ranks / 2, 1);
  const int64_t load_rank = load_ranks - 1;
  const c10::IValue into = target_of(load_rank, ranks * kRowsPerRank / load_ranks, ranks * kRowsPerRank, tensors);
  json << ", \"load_ranks\": " << load_ranks << ", \"peak_rss_load_start\": " << peak_rss();
  dcp::Metadata saved;
  timed("read_metadata", [&] { saved = dcp::read_metadata(folder); });
  size_t reads = 0;
  timed("plan_load", [&] { reads = detail::plan_load(saved, into, folder).reads.size(); });
  json << ", \"load_reads\": " << reads << ", \"phases\": {" << phases.str() << "}}";
  std::cout << json.str() << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: dcp_scale_bench RANKS TENSORS FOLDER (FOLDER: made, .metadata written into it)\n";
    return 2;
  }
  try {
    return run(std::stoll(argv[1]), std::stoll(argv[2]), argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "dcp_scale_bench: " << e.what() << "\n";
    return 1;
  }
}
