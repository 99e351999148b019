// Host stand-in for the few <adf.h> names an AI Engine kernel source uses: the buffer types a
// kernel's run() takes, REGISTER_FUNCTION, and __AIE_ARCH__. It lets hccs_lab.export.hostbuild
// compile an aie4ml project's generated kernel sources, unmodified, with g++ against
// aie_api_shim.hpp. Graph-side names (graph, kernel, connect, ...) are not here: only kernel
// sources are compiled on the host, never the graph.
#pragma once
#include <cstddef>

#include "aie_api_shim.hpp"

// The AIE compiler defines the architecture; 20 is AIE-ML (the kernels branch only on 10, AIE1).
#ifndef __AIE_ARCH__
#define __AIE_ARCH__ 20
#endif

namespace adf {

// A kernel's view of its input window: the data the DMA placed in tile memory.
template <typename T>
class input_buffer {
public:
    input_buffer(const T* data, std::size_t size) : data_(data), size_(size) {}
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    const T* data_;
    std::size_t size_;
};

// A kernel's output window.
template <typename T>
class output_buffer {
public:
    output_buffer(T* data, std::size_t size) : data_(data), size_(size) {}
    T* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    T* data_;
    std::size_t size_;
};

}  // namespace adf

// Registers a kernel class's entry point with the graph compiler; nothing to do on the host.
#define REGISTER_FUNCTION(fn) static_cast<void>(0)
