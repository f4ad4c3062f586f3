// Load a TorchScript twin (twin.pt) and print a forecast: libtorch only, no Python.
//
//   twin_forecast twin.pt
//   twin_forecast twin.pt --time N    # latency of N single-patient 48-h forecasts
//
// The input is a fixed example in the export contract (docs/export.md): the first
// measurement observed at 0, 1 and 2 h at the training mean of every channel, all statics
// unknown (NaN), no doses, queries at 3, 6 and 12 h. Output: one line per query time and
// measurement, "time_h name mean std", with names from the twin's metadata (twinode.json).
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <regex>
#include <string>
#include <vector>

namespace {

// Names of the "measurements" entries, read from the JSON text without a JSON library.
std::vector<std::string> measurement_names(const std::string& json) {
  std::vector<std::string> names;
  auto start = json.find("\"measurements\"");
  auto end = json.find("\"interventions\"");
  if (start == std::string::npos || end == std::string::npos) return names;
  std::string block = json.substr(start, end - start);
  std::regex name_re("\"name\":\\s*\"([^\"]*)\"");
  for (std::sregex_iterator it(block.begin(), block.end(), name_re), stop; it != stop; ++it) names.push_back((*it)[1]);
  return names;
}

// Per-call latency of forecast on one patient: 30 observations over 24 h (every second
// entry observed), no doses, a query every hour for 48 h after the last observation; the
// same request shape as scripts/bench_infer.py. Prints "p50_us p99_us calls threads"; set
// OMP_NUM_THREADS=1 for the lowest latency (small ops lose more to threading than they gain).
int time_forecasts(torch::jit::Module& twin, int64_t D, int64_t S, int calls) {
  const int64_t N = 30;
  auto times = torch::linspace(0.0, 24.0, N);
  auto values = twin.attr("meas_mean").toTensor().unsqueeze(0).repeat({N, 1});
  auto mask = (torch::arange(N * D).reshape({N, D}).remainder(2) == 0).to(torch::kFloat32);
  auto statics = torch::full({S}, std::numeric_limits<float>::quiet_NaN());
  auto doses = torch::zeros({0, 4});
  auto query = 24.0 + torch::arange(1, 49).to(torch::kFloat32);
  auto method = twin.get_method("forecast");
  std::vector<double> us;
  for (int i = 0; i < calls + 5; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto out = method({times, values, mask, statics, doses, query});
    auto stop = std::chrono::steady_clock::now();
    if (i >= 5) us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());  // 5 warm-up calls
  }
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))]; };
  std::cout << at(0.5) << " " << at(0.99) << " " << us.size() << " " << at::get_num_threads() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 0;
  if (argc == 4 && std::string(argv[2]) == "--time") calls = std::atoi(argv[3]);
  if (!(argc == 2 || (argc == 4 && calls > 0))) {
    std::cerr << "usage: twin_forecast twin.pt [--time N]\n";
    return 2;
  }
  torch::jit::ExtraFilesMap extra{{"twinode.json", ""}};
  torch::jit::Module twin;
  try {
    twin = torch::jit::load(argv[1], torch::kCPU, extra);
  } catch (const c10::Error& e) {
    std::cerr << "error: cannot load " << argv[1] << " as a TorchScript twin: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  twin.eval();
  const auto names = measurement_names(extra["twinode.json"]);
  const int64_t D = twin.attr("n_measurements").toInt();
  const int64_t S = twin.attr("n_static").toInt();
  if (static_cast<int64_t>(names.size()) != D) {
    std::cerr << "error: metadata lists " << names.size() << " measurements, the module has " << D << "\n";
    return 1;
  }
  torch::NoGradGuard no_grad;
  if (calls > 0) {
    try {
      return time_forecasts(twin, D, S, calls);
    } catch (const c10::Error& e) {
      std::cerr << "error: forecast failed: " << e.what_without_backtrace() << "\n";
      return 1;
    }
  }
  auto times = torch::tensor({0.0f, 1.0f, 2.0f});
  auto mean0 = twin.attr("meas_mean").toTensor();
  auto values = mean0.unsqueeze(0).repeat({3, 1});
  auto mask = torch::zeros({3, D});
  mask.index_put_({torch::indexing::Slice(), 0}, 1.0f);
  auto statics = torch::full({S}, std::numeric_limits<float>::quiet_NaN());
  auto doses = torch::zeros({0, 4});
  auto query = torch::tensor({3.0f, 6.0f, 12.0f});

  c10::IValue out;
  try {
    out = twin.get_method("forecast")({times, values, mask, statics, doses, query});
  } catch (const c10::Error& e) {
    std::cerr << "error: forecast failed: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  auto tuple = out.toTuple();
  auto mean = tuple->elements()[0].toTensor();
  auto std = tuple->elements()[1].toTensor();
  std::cout.precision(9);
  for (int64_t q = 0; q < query.size(0); ++q)
    for (int64_t d = 0; d < D; ++d)
      std::cout << query[q].item<float>() << " " << names[d] << " " << mean[q][d].item<float>() << " "
                << std[q][d].item<float>() << "\n";
  return 0;
}
