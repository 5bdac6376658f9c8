// Native device guard and PrivateUse1 hooks for the emulated `npu` device.
//
// The emulated npu tensors are Python wrapper tensors over CPU memory, so this helper owns no
// device memory at all. It exists because torch core asks C++ interfaces questions that the
// pure-Python `torch._C._acc` trampolines cannot answer in torch 2.13:
//   * the autograd engine sizes its per-device queues from the guard's deviceCount(), and the
//     Python guard hard-codes 1, so backward on npu:1 trips an internal assert;
//   * Tensor.pin_memory(), DataLoader(pin_memory=True) and DDP(static_graph=True) need a pinned
//     allocator whose pointers is_pinned() recognises;
//   * torch.Generator(device='npu') needs getNewGenerator();
//   * torch.Stream / torch.Event / torch.accelerator.synchronize() need streams and events.
//
// Everything is deliberately trivial: the current device is thread-local (as on real
// accelerators), streams are all the default stream, events record a wall-clock time.

#include <torch/extension.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <c10/core/Allocator.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

namespace transplant_npu {

namespace {

constexpr c10::DeviceType kNpu = c10::DeviceType::PrivateUse1;

// Fixed once by register_npu(); read without a lock afterwards.
c10::DeviceIndex g_device_count = 0;

thread_local c10::DeviceIndex t_current_device = 0;

void check_index(c10::DeviceIndex index) {
  TORCH_CHECK(
      index >= 0 && index < g_device_count,
      "Invalid device npu:", static_cast<int>(index), ", the emulator has ",
      static_cast<int>(g_device_count), " device(s) (set TRANSPLANT_NPU_COUNT to change it)");
}

// ---------------------------------------------------------------------------------------------
// "Pinned" host memory: ordinary aligned CPU memory whose address ranges we remember, so that
// isPinnedPtr() can answer for any pointer inside a block (views with an offset included).

class PinnedAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    void* ptr = nullptr;
    if (nbytes > 0) {
      // 64-byte alignment matches what the CPU allocator guarantees.
      TORCH_CHECK(posix_memalign(&ptr, 64, nbytes) == 0, "pinned allocation of ", nbytes,
                  " bytes failed");
      std::lock_guard<std::mutex> lock(mutex_);
      blocks_[reinterpret_cast<uintptr_t>(ptr)] = nbytes;
    }
    return {ptr, ptr, &PinnedAllocator::release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &PinnedAllocator::release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  bool contains(const void* data) const {
    auto addr = reinterpret_cast<uintptr_t>(data);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.upper_bound(addr);
    if (it == blocks_.begin()) {
      return false;
    }
    --it;
    return addr < it->first + it->second;
  }

  size_t live_blocks() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return blocks_.size();
  }

  static PinnedAllocator& instance() {
    // Leaked on purpose: tensors may be freed during interpreter teardown after statics die.
    static auto* allocator = new PinnedAllocator();
    return *allocator;
  }

 private:
  static void release(void* ptr) {
    if (ptr == nullptr) {
      return;
    }
    {
      auto& self = instance();
      std::lock_guard<std::mutex> lock(self.mutex_);
      self.blocks_.erase(reinterpret_cast<uintptr_t>(ptr));
    }
    std::free(ptr);
  }

  mutable std::mutex mutex_;
  std::map<uintptr_t, size_t> blocks_;
};

// ---------------------------------------------------------------------------------------------
// Per-device default generators: CPU generators, because the kernels that consume them are CPU
// kernels (the npu tensors wrap CPU tensors).

std::vector<at::Generator>& default_generators() {
  static auto* generators = new std::vector<at::Generator>();
  return *generators;
}

// ---------------------------------------------------------------------------------------------

struct NpuHooks final : public at::PrivateUse1HooksInterface {
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasPrimaryContext(c10::DeviceIndex) const override { return true; }
  void init() const override {}

  c10::DeviceIndex deviceCount() const override { return g_device_count; }

  void setCurrentDevice(c10::DeviceIndex device) const override {
    check_index(device);
    t_current_device = device;
  }
  c10::DeviceIndex getCurrentDevice() const override { return t_current_device; }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex device) const override {
    auto previous = t_current_device;
    if (device >= 0) {
      check_index(device);
      t_current_device = device;
    }
    return previous;
  }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex device) const override {
    return exchangeDevice(device);
  }

  bool isPinnedPtr(const void* data) const override {
    return PinnedAllocator::instance().contains(data);
  }
  c10::Allocator* getPinnedMemoryAllocator() const override {
    return &PinnedAllocator::instance();
  }

  c10::Device getDeviceFromPtr(void*) const override {
    return c10::Device(kNpu, t_current_device);
  }

  const at::Generator& getDefaultGenerator(c10::DeviceIndex device_index) const override {
    auto index = device_index < 0 ? t_current_device : device_index;
    check_index(index);
    return default_generators()[index];
  }
  at::Generator getNewGenerator(c10::DeviceIndex device_index) const override {
    if (device_index >= 0) {
      check_index(device_index);
    }
    return at::detail::createCPUGenerator();
  }

  void resizePrivateUse1Bytes(const c10::Storage&, size_t) const override {
    TORCH_CHECK(false, "emulated npu storages have no memory of their own and cannot be resized; "
                       "resize the tensor instead");
  }
};

// ---------------------------------------------------------------------------------------------
// Events carry a wall-clock timestamp so Event.elapsed_time() gives a plausible answer.

struct EmulatedEvent {
  std::chrono::steady_clock::time_point recorded;
};

struct NpuGuardImpl final : public c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return kNpu; }

  c10::Device exchangeDevice(c10::Device device) const override {
    TORCH_INTERNAL_ASSERT(device.type() == kNpu);
    c10::Device previous(kNpu, t_current_device);
    if (device.index() != t_current_device) {
      check_index(device.index());
      t_current_device = device.index();
    }
    return previous;
  }
  c10::Device getDevice() const override { return c10::Device(kNpu, t_current_device); }
  void setDevice(c10::Device device) const override {
    TORCH_INTERNAL_ASSERT(device.type() == kNpu);
    check_index(device.index());
    t_current_device = device.index();
  }
  void uncheckedSetDevice(c10::Device device) const noexcept override {
    if (device.index() >= 0 && device.index() < g_device_count) {
      t_current_device = device.index();
    }
  }

  // Every stream is the default stream of its device; work is synchronous anyway.
  static c10::Stream default_stream(c10::Device device) {
    auto index = device.index() < 0 ? t_current_device : device.index();
    return c10::Stream(c10::Stream::DEFAULT, c10::Device(kNpu, index));
  }
  c10::Stream getStream(c10::Device device) const override { return default_stream(device); }
  c10::Stream getDefaultStream(c10::Device device) const override {
    return default_stream(device);
  }
  c10::Stream getStreamFromGlobalPool(c10::Device device, bool) const override {
    return default_stream(device);
  }
  c10::Stream getNewStream(c10::Device device, int) const override {
    return default_stream(device);
  }
  c10::Stream exchangeStream(c10::Stream stream) const override {
    return c10::Stream(c10::Stream::DEFAULT, stream.device());
  }
  bool queryStream(const c10::Stream&) const override { return true; }
  void synchronizeStream(const c10::Stream&) const override {}
  bool isStreamCapturing(const c10::Stream&) const override { return false; }
  void synchronizeDevice(const c10::DeviceIndex) const override {}
  void recordDataPtrOnStream(const c10::DataPtr&, const c10::Stream&) const override {}

  void record(void** event, const c10::Stream&, const c10::DeviceIndex,
              const c10::EventFlag) const override {
    if (*event == nullptr) {
      *event = new EmulatedEvent();
    }
    static_cast<EmulatedEvent*>(*event)->recorded = std::chrono::steady_clock::now();
  }
  void block(void*, const c10::Stream&) const override {}
  bool queryEvent(void*) const override { return true; }
  void synchronizeEvent(void*) const override {}
  void destroyEvent(void* event, const c10::DeviceIndex) const noexcept override {
    delete static_cast<EmulatedEvent*>(event);
  }
  double elapsedTime(void* start, void* end, const c10::DeviceIndex) const override {
    TORCH_CHECK(start != nullptr && end != nullptr,
                "Both events must be recorded before calculating elapsed time.");
    auto delta = static_cast<EmulatedEvent*>(end)->recorded -
                 static_cast<EmulatedEvent*>(start)->recorded;
    return std::chrono::duration<double, std::milli>(delta).count();
  }

  c10::DeviceIndex deviceCount() const noexcept override { return g_device_count; }
};

bool g_registered = false;

}  // namespace

// Installs the guard and hooks. Must run before anything registers PrivateUse1 hooks (torch
// accepts them once per process) and before the first backward (the autograd engine reads the
// device count when it starts its device threads).
void register_npu(int64_t device_count) {
  TORCH_CHECK(device_count >= 1 && device_count <= 64,
              "emulated npu device count must be between 1 and 64, got ", device_count);
  if (g_registered) {
    TORCH_CHECK(device_count == g_device_count, "the native npu helper is already registered with ",
                static_cast<int>(g_device_count), " device(s); cannot change it to ", device_count);
    return;
  }
  TORCH_CHECK(!at::isPrivateUse1HooksRegistered(),
              "PrivateUse1 hooks are already registered in this process (another backend, or the "
              "pure-Python emulator mode, was activated first)");
  g_device_count = static_cast<c10::DeviceIndex>(device_count);
  auto& generators = default_generators();
  for (int64_t i = 0; i < device_count; ++i) {
    generators.push_back(at::detail::createCPUGenerator());
  }
  // Both objects live for the rest of the process: torch keeps raw pointers to them.
  static NpuGuardImpl* guard = new NpuGuardImpl();
  static c10::impl::DeviceGuardImplRegistrar registrar(kNpu, guard);
  at::RegisterPrivateUse1HooksInterface(new NpuHooks());
  g_registered = true;
}

}  // namespace transplant_npu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Device guard and PrivateUse1 hooks for transplant's emulated npu device";
  m.def("register", &transplant_npu::register_npu, py::arg("device_count"),
        "Install the npu device guard and hooks with this many devices.");
  m.def("is_registered", [] { return transplant_npu::g_registered; });
  m.def("device_count", [] { return static_cast<int>(transplant_npu::g_device_count); });
  m.def("current_device", [] { return static_cast<int>(transplant_npu::t_current_device); });
  m.def("hooks_registered", [] { return at::isPrivateUse1HooksRegistered(); },
        "Whether any PrivateUse1 hooks (ours or someone else's) are registered.");
  m.def("pinned_blocks", [] { return transplant_npu::PinnedAllocator::instance().live_blocks(); },
        "Number of live pinned host blocks (for leak checks in tests).");
  m.def(
      "default_generator",
      [](int64_t index) -> at::Generator {
        TORCH_CHECK(transplant_npu::g_registered, "the native npu helper is not registered");
        transplant_npu::check_index(static_cast<c10::DeviceIndex>(index));
        return transplant_npu::default_generators()[index];
      },
      py::arg("index"), "The per-device default (CPU) generator torch core uses for npu:index.");
}
