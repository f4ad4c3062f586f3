// Load a TorchScript twin (twin.pt) and print a forecast: libtorch only, no Python.
//
//   twin_forecast twin.pt
//
// The input is a fixed example in the export contract (docs/export.md): the first
// measurement observed at 0, 1 and 2 h at the training mean of every channel, all statics
// unknown (NaN), no doses, queries at 3, 6 and 12 h. Output: one line per query time and
// measurement, "time_h name mean std", with names from the twin's metadata (twinode.json).
#include <torch/script.h>

#include <cmath>
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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: twin_forecast twin.pt\n";
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
