// model_summary: prints a model's parameters as a table (name, shape, trainable) and the totals.
//   model_summary --model resnet18 --num-classes 10 --freeze-backbone --json
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <xfer/xfer.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"Print an xfer model's parameters and totals"};
  std::string model = "resnet18";
  int64_t num_classes = 1000;
  bool freeze_backbone = false, json = false;
  app.add_option("--model", model, "Model name")->check(CLI::IsMember(xfer::models::model_names()));
  app.add_option("--num-classes", num_classes, "Classes of the head")->check(CLI::PositiveNumber);
  app.add_flag("--freeze-backbone", freeze_backbone, "Freeze everything except the head");
  app.add_flag("--json", json, "Print a JSON summary as the last line");
  CLI11_PARSE(app, argc, argv);

  try {
    auto net = xfer::models::create<float>(model, {.num_classes = num_classes});
    if (freeze_backbone) net->freeze_backbone();
    std::printf("%-40s %-20s %12s  %s\n", "name", "shape", "elements", "trainable");
    for (const auto& np : net->named_parameters())
      std::printf("%-40s %-20s %12lld  %s\n", np.name.c_str(), xfer::shape_str(np.param->shape).c_str(),
                  static_cast<long long>(np.param->numel), np.param->trainable ? "yes" : "no");
    for (const auto& nb : net->named_buffers())
      std::printf("%-40s %-20s %12s  %s\n", nb.name.c_str(),
                  nb.buffer.tensor ? xfer::shape_str(nb.buffer.tensor->shape()).c_str() : "[] int64", "-", "buffer");
    const int64_t total = net->num_parameters(), trainable = net->num_trainable_parameters();
    std::printf("\n%s: %lld parameters, %lld trainable, %lld frozen; head '%s' with %lld classes\n",
                net->type_name().c_str(), static_cast<long long>(total), static_cast<long long>(trainable),
                static_cast<long long>(total - trainable), net->head_name().c_str(),
                static_cast<long long>(net->num_classes()));
    if (json) std::cout << nlohmann::json{{"model", model}, {"total", total}, {"trainable", trainable}}.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "model_summary: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
