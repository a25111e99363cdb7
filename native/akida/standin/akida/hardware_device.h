// Stand-in for the akida engine's akida/hardware_device.h: only what qana_akida_engine.cpp names, so that it compiles
// here (make akida-shim-check); the signatures follow BrainChip's documentation, the bodies are stubs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>
#include "akida/dense.h"
#include "infra/hardware_driver.h"
namespace akida {
struct ProgramInfo {
  std::vector<Index> input_dims() const { return {64, 64, 3}; }
  std::vector<Index> output_dims() const { return {1, 1, 7}; }
};
class HardwareDevice;
using HardwareDevicePtr = std::shared_ptr<HardwareDevice>;
class HardwareDevice {
 public:
  static HardwareDevicePtr create(HardwareDriver*) { return std::make_shared<HardwareDevice>(); }
  void program(const uint8_t*, size_t) {}
  void set_batch_size(int, bool) {}
  const ProgramInfo& program_info() const { return info_; }
  bool enqueue(const Tensor&) { return true; }
  TensorUniquePtr fetch() { return nullptr; }
 private:
  ProgramInfo info_;
};
}  // namespace akida
