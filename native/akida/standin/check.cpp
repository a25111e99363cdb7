// make akida-shim-check: qana_akida_engine.cpp linked against the stand-ins beside this file, its refusals run. Each
// failing call must leave its own message: one that set none would let the caller report an earlier failure's
// message as its reason. The stand-ins are not BrainChip's headers; this says nothing about the real engine.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include "qana_akida.h"
#include "infra/hardware_driver.h"
namespace qana {
std::unique_ptr<akida::HardwareDriver> open_akida_driver(const char* device, std::string& error) {
  if (std::strcmp(device, "/dev/akida0") == 0) return std::make_unique<akida::HardwareDriver>();
  if (std::strcmp(device, "/dev/silent") == 0) return nullptr;
  error = std::string(device) + ": no such device";
  return nullptr;
}
}
static int failures = 0;
#define EXPECT(what, call, want, errdev, want_msg) do { int32_t st_ = (call); std::string m_ = qana_akida_last_error(errdev); expect(what, st_, want, m_.c_str(), want_msg); } while (0)
static void expect(const char* what, int32_t status, int32_t want, const char* msg, const char* want_msg) {
  bool ok = status == want && std::strcmp(msg, want_msg) == 0;
  if (!ok) ++failures;
  std::printf("%s %s: status %d, message \"%s\"\n", ok ? "ok  " : "FAIL", what, status, msg);
}
int main() {
  qana_akida_device* dev = nullptr;
  EXPECT("open missing", qana_akida_open("/dev/akida9", &dev), QANA_AKIDA_E_DEVICE, nullptr, "/dev/akida9: no such device");
  EXPECT("open null out", qana_akida_open("/dev/akida0", nullptr), QANA_AKIDA_E_ARGUMENT, nullptr, "the handle pointer is null");
  EXPECT("open silent driver", qana_akida_open("/dev/silent", &dev), QANA_AKIDA_E_DEVICE, nullptr, "/dev/silent: the driver did not open the device");
  EXPECT("program null handle", qana_akida_program(nullptr, nullptr, 0), QANA_AKIDA_E_ARGUMENT, nullptr, "the device handle is null");
  EXPECT("open", qana_akida_open("/dev/akida0", &dev), QANA_AKIDA_OK, nullptr, "");
  size_t in = 0, out = 0;
  int8_t buf[7];
  EXPECT("enqueue before program", qana_akida_enqueue(dev, buf, 7), QANA_AKIDA_E_STATE, dev, "enqueue before program: the device has no program");
  EXPECT("shape null pointer", qana_akida_shape(dev, nullptr, &out), QANA_AKIDA_E_ARGUMENT, dev, "null length pointer");
  EXPECT("enqueue null input", qana_akida_enqueue(dev, nullptr, 7), QANA_AKIDA_E_ARGUMENT, dev, "input is null");
  EXPECT("fetch null buffer", qana_akida_fetch(dev, nullptr, 7), QANA_AKIDA_E_ARGUMENT, dev, "logits buffer is null");
  const uint8_t program[4] = {1, 2, 3, 4};
  EXPECT("program", qana_akida_program(dev, program, sizeof program), QANA_AKIDA_OK, dev, "");
  EXPECT("shape null pointer", qana_akida_shape(dev, &in, nullptr), QANA_AKIDA_E_ARGUMENT, dev, "null length pointer");
  EXPECT("shape", qana_akida_shape(dev, &in, &out), QANA_AKIDA_OK, dev, "");
  EXPECT("empty program", qana_akida_program(dev, nullptr, 0), QANA_AKIDA_E_ARGUMENT, dev, "empty program");
  EXPECT("shape after a refused program", qana_akida_shape(dev, &in, &out), QANA_AKIDA_E_STATE, dev, "the device has no program");
  qana_akida_close(dev);
  std::printf("%d failure(s)\n", failures);
  return failures != 0;
}
