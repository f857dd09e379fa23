// Scan conversion of one polar IVOCT frame to an N x N Cartesian image, one thread per pixel.
//
// Compiled by engine/cuda_sources.py (cupy.RawModule, NVRTC); called from
// engine.scan_convert.CupyScanKernel. Semantics are those of the NumPy reference
// engine.scan_convert.ReferenceScanKernel and of the packed table built by
// engine.scan_convert.build_table:
//   bits  0-15  a0  display row (stored row = (a0 + shift) % n_rows)
//   bits 16-31  r0  radius in samples (stored column = r0 - z)
//   bits 32-47  row weight, bits 48-63 radius weight, both in units of 1/65536.
// Samples outside the stored columns are background (0); rows wrap around (last -> first).

template <typename T>
__device__ __forceinline__ float sample_or_zero(const T* __restrict__ polar, int row, int col,
                                                int n_samples) {
    return (col >= 0 && col < n_samples) ? static_cast<float>(polar[(long long)row * n_samples + col])
                                         : 0.0f;
}

template <typename T>
__device__ __forceinline__ void scan_convert_pixel(const T* __restrict__ polar, int n_rows,
                                                   int n_samples,
                                                   const unsigned long long* __restrict__ table,
                                                   int n_pixels, int z_offset, int row_shift,
                                                   float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_pixels) {
        return;
    }
    const unsigned long long t = table[i];
    const int a0 = static_cast<int>(t & 0xFFFFull);
    const int r0 = static_cast<int>((t >> 16) & 0xFFFFull);
    const float wa = static_cast<float>((t >> 32) & 0xFFFFull) * (1.0f / 65536.0f);
    const float wc = static_cast<float>(t >> 48) * (1.0f / 65536.0f);
    int row0 = a0 + row_shift;
    if (row0 >= n_rows) {
        row0 -= n_rows;
    }
    const int row1 = (row0 + 1 == n_rows) ? 0 : row0 + 1;
    const int c0 = r0 - z_offset;
    const float v00 = sample_or_zero(polar, row0, c0, n_samples);
    const float v01 = sample_or_zero(polar, row0, c0 + 1, n_samples);
    const float v10 = sample_or_zero(polar, row1, c0, n_samples);
    const float v11 = sample_or_zero(polar, row1, c0 + 1, n_samples);
    const float top = v00 + wc * (v01 - v00);
    const float bottom = v10 + wc * (v11 - v10);
    out[i] = top + wa * (bottom - top);
}

// row_shift must be in [0, n_rows); the host wrapper reduces it.
extern "C" __global__ void scan_convert_u8(const unsigned char* __restrict__ polar, int n_rows,
                                           int n_samples,
                                           const unsigned long long* __restrict__ table,
                                           int n_pixels, int z_offset, int row_shift,
                                           float* __restrict__ out) {
    scan_convert_pixel(polar, n_rows, n_samples, table, n_pixels, z_offset, row_shift, out);
}

extern "C" __global__ void scan_convert_u16(const unsigned short* __restrict__ polar, int n_rows,
                                            int n_samples,
                                            const unsigned long long* __restrict__ table,
                                            int n_pixels, int z_offset, int row_shift,
                                            float* __restrict__ out) {
    scan_convert_pixel(polar, n_rows, n_samples, table, n_pixels, z_offset, row_shift, out);
}

extern "C" __global__ void scan_convert_f32(const float* __restrict__ polar, int n_rows,
                                            int n_samples,
                                            const unsigned long long* __restrict__ table,
                                            int n_pixels, int z_offset, int row_shift,
                                            float* __restrict__ out) {
    scan_convert_pixel(polar, n_rows, n_samples, table, n_pixels, z_offset, row_shift, out);
}
