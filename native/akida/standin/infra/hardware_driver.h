// Stand-in for the akida engine's infra/hardware_driver.h: only what qana_akida_engine.cpp names, so that it compiles
// here (make akida-shim-check); the signatures follow BrainChip's documentation, the bodies are stubs.
#pragma once
namespace akida {
class HardwareDriver { public: virtual ~HardwareDriver() = default; };
}
