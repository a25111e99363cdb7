// Stand-in for the akida engine's akida/dense.h and tensor types: only what qana_akida_engine.cpp names, so that it compiles
// here (make akida-shim-check); the signatures follow BrainChip's documentation, the bodies are stubs.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>
namespace akida {
using Index = uint32_t;
enum class TensorType { uint8, int8, int32 };
enum class TensorLayout { RowMajor, ColMajor };
class Dense;
class Tensor {
 public:
  virtual ~Tensor() = default;
  static std::shared_ptr<const Dense> ensure_dense(std::shared_ptr<const Tensor> t);
};
using TensorUniquePtr = std::unique_ptr<Tensor>;
using TensorConstPtr = std::shared_ptr<const Tensor>;
class Dense : public Tensor {
 public:
  TensorType type() const { return TensorType::int8; }
  const char* buffer() const { return nullptr; }
  static std::unique_ptr<const Dense> create_view(const char*, TensorType, const std::vector<Index>&, TensorLayout) {
    return std::make_unique<const Dense>();
  }
};
inline std::shared_ptr<const Dense> Tensor::ensure_dense(std::shared_ptr<const Tensor> t) {
  return std::dynamic_pointer_cast<const Dense>(t);
}
}  // namespace akida
