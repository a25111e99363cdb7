/*
 * qana_akida.h: the narrow C interface between qanad and an Akida device.
 *
 * qanad calls these functions through [LibraryImport] (src/QanaEdge.Akida/AkidaNative.cs); two libraries
 * implement them:
 *   - qana_akida_engine.cpp, the shim over BrainChip's akida engine (akida::HardwareDevice), built in the
 *     board image;
 *   - tests/QanaEdge.AkidaEmulator, the emulator the tests load in its place.
 * Only blittable types cross: pointers, sizes, int32 status codes, NUL-terminated UTF-8 strings.
 *
 * Life of a device, as akida::HardwareDevice has it (program, then enqueue/fetch; one input in flight here):
 *   qana_akida_open -> qana_akida_program -> (qana_akida_enqueue -> qana_akida_fetch)* -> qana_akida_close
 * A handle is used by one thread at a time. Every call but open/close/last_error/abi_version returns a status;
 * on a negative status qana_akida_last_error(dev) says why in one line.
 */
#ifndef QANA_AKIDA_H
#define QANA_AKIDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this file; callers refuse a library reporting another version. */
#define QANA_AKIDA_ABI_VERSION 1u

/* Status codes. */
#define QANA_AKIDA_OK 0
#define QANA_AKIDA_E_ARGUMENT (-1)    /* null pointer or bad length argument */
#define QANA_AKIDA_E_DEVICE (-2)      /* the device could not be opened or stopped answering */
#define QANA_AKIDA_E_PROGRAM (-3)     /* the program was refused (format, or the chip's constraints) */
#define QANA_AKIDA_E_STATE (-4)       /* call out of order: enqueue before program, fetch with nothing enqueued */
#define QANA_AKIDA_E_SHAPE (-5)       /* input or output length differs from the programmed network's */
#define QANA_AKIDA_E_BUSY (-6)        /* an input is already in flight: fetch it first */
#define QANA_AKIDA_E_UNSUPPORTED (-7) /* this library cannot do what was asked (see the message) */

typedef struct qana_akida_device qana_akida_device;

/* QANA_AKIDA_ABI_VERSION of the library. */
uint32_t qana_akida_abi_version(void);

/* Opens the device node (e.g. "/dev/akida0"). On success *out is a handle for qana_akida_close; on failure *out is
 * NULL and qana_akida_last_error(NULL) holds the reason (per calling thread). */
int32_t qana_akida_open(const char* device, qana_akida_device** out);

/* Programs the device. The program is a .qana package (docs/model-format.md) of the akd1000 profile: the emulator
 * runs its integer graph; the shim over BrainChip's engine takes BrainChip's own program format (see
 * native/akida/README.md). A refused program leaves the device unprogrammed. */
int32_t qana_akida_program(qana_akida_device* dev, const uint8_t* program, size_t length);

/* Lengths of the programmed network's input (int8 HWC) and of its output (int8 logits). */
int32_t qana_akida_shape(qana_akida_device* dev, size_t* input_length, size_t* output_length);

/* Queues one quantized int8 HWC input; returns at once. At most one input is in flight. */
int32_t qana_akida_enqueue(qana_akida_device* dev, const int8_t* input, size_t length);

/* Blocks until the oldest enqueued input has run and copies its int8 logits (length = output length). */
int32_t qana_akida_fetch(qana_akida_device* dev, int8_t* logits, size_t length);

/* Why the last call on this handle failed ("" when it did not); dev NULL: why the calling thread's last open, or its
 * last call given a NULL handle, failed. Every failing call sets its own message, argument errors included.
 * The string stays valid until the next call on the same handle (or thread). */
const char* qana_akida_last_error(const qana_akida_device* dev);

/* Releases the device; NULL is ignored. */
void qana_akida_close(qana_akida_device* dev);

#ifdef __cplusplus
}
#endif

#endif /* QANA_AKIDA_H */
