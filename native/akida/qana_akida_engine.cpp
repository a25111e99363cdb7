/*
 * qana_akida_engine.cpp: qana_akida.h implemented on BrainChip's akida engine library (akida::HardwareDevice).
 *
 * NOT COMPILED OR TESTED IN THIS REPOSITORY. The build machine has neither the akida engine headers and library nor a
 * card; the tests run qanad against tests/QanaEdge.AkidaEmulator instead. The calls below follow the akida engine
 * 2.x C++ API as BrainChip documents it (HardwareDevice::create/program/set_batch_size/enqueue/fetch, Dense::create_view);
 * check them against the engine version the board image ships. Build line: native/akida/README.md.
 *
 * What this shim does not do (each returns QANA_AKIDA_E_UNSUPPORTED with a message, so qanad falls back to the
 * managed engine and says why):
 *   - map a .qana integer graph onto the chip: an Akida program is produced offline by BrainChip's toolchain
 *     (cnn2snn/akida Python packages, model.map(AKD1000()) then model.sequences[0].program); this shim programs such
 *     a binary, and refuses a .qana package;
 *   - requantize 32-bit output potentials: the program must end in a layer whose outputs are 8-bit.
 *
 * Two rules hold for every entry point, because the caller is .NET code on a device that must keep classifying:
 *   - no C++ exception leaves this file: one that reached the managed caller would abort the daemon. The engine's
 *     exceptions become QANA_AKIDA_E_DEVICE (QANA_AKIDA_E_PROGRAM while programming) with their what() as the message;
 *   - no call waits forever: fetch gives up after kFetchTimeout and marks the handle faulted, and every later enqueue
 *     or fetch answers QANA_AKIDA_E_DEVICE until the handle is closed and the device opened again. qanad then moves the
 *     model to its managed engine (CardFailover), whose logits are the card's bit for bit.
 */
#include "qana_akida.h"

#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "akida/dense.h"
#include "akida/hardware_device.h"
#include "infra/hardware_driver.h"

namespace qana {
// The HardwareDriver over the akida PCIe kernel driver's /dev/akidaN (register access and the scratch memory the
// kernel driver maps), from the board support layer; nullptr (and a message in `error`) when the node does not open.
std::unique_ptr<akida::HardwareDriver> open_akida_driver(const char* device, std::string& error);
}  // namespace qana

struct qana_akida_device {
  std::unique_ptr<akida::HardwareDriver> driver;
  akida::HardwareDevicePtr hw;
  std::string error;
  size_t input_length = 0, output_length = 0;
  std::vector<akida::Index> input_shape;
  bool programmed = false, pending = false;
  bool faulted = false;  // a fetch timed out: the card's state is unknown until it is opened again
};

namespace {
thread_local std::string t_open_error;
const uint8_t kQanaMagic[8] = {0x89, 'Q', 'A', 'N', 'A', 0x0D, 0x0A, 0x1A};

// A job takes about a millisecond on AKD1000; a card that has not answered in a second has stopped.
constexpr auto kFetchTimeout = std::chrono::milliseconds(1000);
// Fetch spins (yielding) this long before it starts sleeping between polls, so a normal job is not delayed by a sleep.
constexpr auto kFetchSpin = std::chrono::milliseconds(2);

// A refusal's status with its message stored on the handle. Storing a literal may allocate, and no exception may leave
// an entry point, so it is caught here: a message that cannot be stored (out of memory) leaves an empty one. Messages
// built with std::string concatenation allocate before this is entered, so they are built inside guarded() only.
int32_t fail(qana_akida_device* dev, int32_t status, const char* message) noexcept {
  try { dev->error = message; } catch (...) { dev->error.clear(); }
  return status;
}
int32_t fail(qana_akida_device* dev, int32_t status, std::string&& message) noexcept {
  dev->error = std::move(message);  // a move never allocates
  return status;
}

// A refusal with no handle to hold its message (open, or a call given a NULL handle): qana_akida_last_error(NULL)
// reads it. Every refusal sets one, or the caller would report whatever an earlier call left as this call's reason.
int32_t fail_unbound(int32_t status, const char* message) noexcept {
  try { t_open_error = message; } catch (...) {}
  return status;
}

// Runs one entry point's body with the engine's exceptions turned into a status and a message.
template <class Body>
int32_t guarded(qana_akida_device* dev, int32_t status_on_exception, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    try { return fail(dev, status_on_exception, std::string("akida engine: ") + e.what()); } catch (...) {}
  } catch (...) {
    try { return fail(dev, status_on_exception, "akida engine: an exception of unknown type"); } catch (...) {}
  }
  return status_on_exception;  // not even the message could be stored (out of memory)
}
size_t product(const std::vector<akida::Index>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}
}  // namespace

extern "C" uint32_t qana_akida_abi_version(void) { return QANA_AKIDA_ABI_VERSION; }

extern "C" int32_t qana_akida_open(const char* device, qana_akida_device** out) {
  if (out == nullptr) return fail_unbound(QANA_AKIDA_E_ARGUMENT, "the handle pointer is null");
  *out = nullptr;
  if (device == nullptr) return fail_unbound(QANA_AKIDA_E_ARGUMENT, "device path is null");
  t_open_error.clear();  // outside the try: clear() never allocates, so never throws
  try {
    auto dev = std::make_unique<qana_akida_device>();
    dev->driver = qana::open_akida_driver(device, t_open_error);
    if (!dev->driver) {
      if (t_open_error.empty()) t_open_error = std::string(device) + ": the driver did not open the device";
      return QANA_AKIDA_E_DEVICE;
    }
    dev->hw = akida::HardwareDevice::create(dev->driver.get());
    if (!dev->hw) { t_open_error = std::string(device) + ": the akida engine did not create a device"; return QANA_AKIDA_E_DEVICE; }
    *out = dev.release();
    return QANA_AKIDA_OK;
  } catch (const std::exception& e) {
    try { t_open_error = std::string(device) + ": akida engine: " + e.what(); } catch (...) {}
  } catch (...) {
    try { t_open_error = std::string(device) + ": akida engine: an exception of unknown type"; } catch (...) {}
  }
  return QANA_AKIDA_E_DEVICE;
}

extern "C" int32_t qana_akida_program(qana_akida_device* dev, const uint8_t* program, size_t length) {
  if (dev == nullptr) return fail_unbound(QANA_AKIDA_E_ARGUMENT, "the device handle is null");
  dev->programmed = dev->pending = false;  // a refused program leaves none, whatever refused it (qana_akida.h)
  if (program == nullptr || length == 0) return fail(dev, QANA_AKIDA_E_ARGUMENT, "empty program");
  if (length >= sizeof kQanaMagic && std::memcmp(program, kQanaMagic, sizeof kQanaMagic) == 0)
    return fail(dev, QANA_AKIDA_E_UNSUPPORTED,
                "program refused: a .qana graph needs mapping to an Akida program by BrainChip's toolchain, which this shim does not do");
  if (dev->faulted) return fail(dev, QANA_AKIDA_E_DEVICE, "the card stopped answering earlier: close and open it again");
  return guarded(dev, QANA_AKIDA_E_PROGRAM, [&] {
    // The engine panics (does not return) on a malformed program: the program must come from the same engine version.
    dev->hw->program(program, length);
    dev->hw->set_batch_size(1, true);  // one input in flight; inputs copied to scratch memory
    const auto& info = dev->hw->program_info();
    dev->input_shape = info.input_dims();
    dev->input_length = product(dev->input_shape);
    dev->output_length = product(info.output_dims());
    dev->programmed = true;
    dev->error.clear();
    return QANA_AKIDA_OK;
  });
}

extern "C" int32_t qana_akida_shape(qana_akida_device* dev, size_t* input_length, size_t* output_length) {
  if (dev == nullptr) return fail_unbound(QANA_AKIDA_E_ARGUMENT, "the device handle is null");
  if (input_length == nullptr || output_length == nullptr) return fail(dev, QANA_AKIDA_E_ARGUMENT, "null length pointer");
  if (!dev->programmed) return fail(dev, QANA_AKIDA_E_STATE, "the device has no program");
  *input_length = dev->input_length;
  *output_length = dev->output_length;
  dev->error.clear();
  return QANA_AKIDA_OK;
}

extern "C" int32_t qana_akida_enqueue(qana_akida_device* dev, const int8_t* input, size_t length) {
  if (dev == nullptr) return fail_unbound(QANA_AKIDA_E_ARGUMENT, "the device handle is null");
  if (input == nullptr && length != 0) return fail(dev, QANA_AKIDA_E_ARGUMENT, "input is null");
  if (dev->faulted) return fail(dev, QANA_AKIDA_E_DEVICE, "the card stopped answering earlier: close and open it again");
  if (!dev->programmed) return fail(dev, QANA_AKIDA_E_STATE, "enqueue before program: the device has no program");
  if (dev->pending) return fail(dev, QANA_AKIDA_E_BUSY, "an input is already in flight: fetch its output first");
  return guarded(dev, QANA_AKIDA_E_DEVICE, [&] {
    if (length != dev->input_length)
      return fail(dev, QANA_AKIDA_E_SHAPE, "input of " + std::to_string(length) + " bytes, the program takes " + std::to_string(dev->input_length));
    // The chip's 8-bit input layer reads unsigned pixels: q = p - 128 back to p.
    static thread_local std::vector<uint8_t> pixels;
    pixels.resize(length);
    for (size_t i = 0; i < length; ++i) pixels[i] = static_cast<uint8_t>(input[i] + 128);
    auto tensor = akida::Dense::create_view(reinterpret_cast<const char*>(pixels.data()), akida::TensorType::uint8,
                                            dev->input_shape, akida::TensorLayout::RowMajor);
    if (!dev->hw->enqueue(*tensor)) return fail(dev, QANA_AKIDA_E_BUSY, "the device pipeline is full");
    dev->pending = true;
    dev->error.clear();
    return QANA_AKIDA_OK;
  });
}

extern "C" int32_t qana_akida_fetch(qana_akida_device* dev, int8_t* logits, size_t length) {
  if (dev == nullptr) return fail_unbound(QANA_AKIDA_E_ARGUMENT, "the device handle is null");
  if (logits == nullptr && length != 0) return fail(dev, QANA_AKIDA_E_ARGUMENT, "logits buffer is null");
  if (dev->faulted) return fail(dev, QANA_AKIDA_E_DEVICE, "the card stopped answering earlier: close and open it again");
  if (!dev->programmed) return fail(dev, QANA_AKIDA_E_STATE, "fetch before program: the device has no program");
  if (!dev->pending) return fail(dev, QANA_AKIDA_E_STATE, "fetch with nothing enqueued");
  return guarded(dev, QANA_AKIDA_E_DEVICE, [&] {
    if (length != dev->output_length)
      return fail(dev, QANA_AKIDA_E_SHAPE, "output buffer of " + std::to_string(length) + " bytes, the program emits " + std::to_string(dev->output_length));
    // fetch() returns nullptr until the job is done: poll, yielding for the first kFetchSpin, then sleeping briefly.
    const auto start = std::chrono::steady_clock::now();
    akida::TensorUniquePtr out;
    while (!(out = dev->hw->fetch())) {
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited >= kFetchTimeout) {
        dev->faulted = true;
        dev->pending = false;
        return fail(dev, QANA_AKIDA_E_DEVICE, "no output after " + std::to_string(kFetchTimeout.count()) +
                                                  " ms (a job takes about 1 ms): the card stopped answering");
      }
      if (waited < kFetchSpin) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    dev->pending = false;
    akida::TensorConstPtr result = std::move(out);
    auto dense = akida::Tensor::ensure_dense(result);  // outputs may come back sparse
    // Signed 8-bit only: the host reads int8 logits with the package's zero point, and a uint8 output copied as they
    // are would turn every value of 128 or more negative (200 into -56) and change the decision.
    if (dense->type() == akida::TensorType::uint8)
      return fail(dev, QANA_AKIDA_E_UNSUPPORTED, "the program emits unsigned 8-bit outputs; it must end in a signed 8-bit output layer");
    if (dense->type() != akida::TensorType::int8)
      return fail(dev, QANA_AKIDA_E_UNSUPPORTED, "the program emits 32-bit potentials; it must end in an 8-bit output layer");
    std::memcpy(logits, dense->buffer(), length);
    dev->error.clear();
    return QANA_AKIDA_OK;
  });
}

extern "C" const char* qana_akida_last_error(const qana_akida_device* dev) {
  return dev == nullptr ? t_open_error.c_str() : dev->error.c_str();
}

extern "C" void qana_akida_close(qana_akida_device* dev) { delete dev; }  // destructors are noexcept
