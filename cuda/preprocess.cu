// Intensity preprocessing kernels: normalisation to [0, 1] and separable resampling of a polar
// frame to the model grid.
//
// Compiled by engine/cuda_sources.py (cupy.RawModule, NVRTC); called from
// engine.preprocess.CupyPreprocessKernel. Semantics are those of the NumPy reference
// engine.preprocess.ReferencePreprocessKernel; the taps come from engine.preprocess.build_plan.

extern "C" __global__ void normalise_lut_u8(const unsigned char* __restrict__ pixels,
                                            const float* __restrict__ lut, int n,
                                            float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = lut[pixels[i]];
    }
}

extern "C" __global__ void normalise_lut_u16(const unsigned short* __restrict__ pixels,
                                             const float* __restrict__ lut, int n,
                                             float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = lut[pixels[i]];
    }
}

// LOG: y = x / full_scale; LIN: y = 1 + 10 log10(x / full_scale) / dynamic_range_db (0 for x <= 0);
// then (y - low) / (high - low) clipped to [0, 1].
extern "C" __global__ void normalise_f32(const float* __restrict__ pixels, int n, int is_log,
                                         float full_scale, float dynamic_range_db, float low,
                                         float high, float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const float x = pixels[i];
    float y;
    if (is_log) {
        y = x / full_scale;
    } else if (x > 0.0f) {
        y = 1.0f + 10.0f * log10f(x / full_scale) / dynamic_range_db;
    } else {
        y = 0.0f;
    }
    y = (y - low) / (high - low);
    out[i] = fminf(fmaxf(y, 0.0f), 1.0f);
}

// out[a, j] = sum_t weights[j, t] * values[a, starts[j] + t - z], 0 outside the stored columns.
extern "C" __global__ void resample_radial(const float* __restrict__ values, int n_rows,
                                           int n_samples, int n_depth, int z_offset,
                                           const int* __restrict__ starts,
                                           const float* __restrict__ weights, int taps,
                                           float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_rows * n_depth) {
        return;
    }
    const int a = i / n_depth;
    const int j = i - a * n_depth;
    const float* row = values + (long long)a * n_samples;
    const int first = starts[j] - z_offset;
    float acc = 0.0f;
    for (int t = 0; t < taps; ++t) {
        const int c = first + t;
        if (c >= 0 && c < n_samples) {
            acc += weights[j * taps + t] * row[c];
        }
    }
    out[i] = acc;
}

// out[k, j] = sum_t weights[k, t] * values[(starts[k] + t) % n_rows, j] (circular over A-lines).
extern "C" __global__ void resample_angular(const float* __restrict__ values, int n_rows,
                                            int n_depth, int n_alines_out,
                                            const int* __restrict__ starts,
                                            const float* __restrict__ weights, int taps,
                                            float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_alines_out * n_depth) {
        return;
    }
    const int k = i / n_depth;
    const int j = i - k * n_depth;
    float acc = 0.0f;
    for (int t = 0; t < taps; ++t) {
        int row = starts[k] + t;
        row %= n_rows;
        acc += weights[k * taps + t] * values[(long long)row * n_depth + j];
    }
    out[i] = acc;
}
