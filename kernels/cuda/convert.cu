// uint8 <-> float32 image conversion in one pass (torch needs a cast plus one pass per arithmetic op).
// float = u8 * scale + offset; the inverse rounds half to even and clamps, NaN -> 0, like convert.py.

extern "C" __global__ void u8_to_float(const unsigned char* __restrict__ src, float* __restrict__ dst,
                                       const float scale, const float offset, const long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        // explicit roundings: no fused multiply-add, so results equal torch's mul then add bit for bit
        dst[i] = __fadd_rn(__fmul_rn((float)src[i], scale), offset);
    }
}

extern "C" __global__ void float_to_u8(const float* __restrict__ src, unsigned char* __restrict__ dst,
                                       const float inv_scale, const float offset, const long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float q = rintf(__fmul_rn(__fsub_rn(src[i], offset), inv_scale));
        // fmaxf returns its other operand for NaN, so NaN lands on 0
        dst[i] = (unsigned char)fminf(fmaxf(q, 0.0f), 255.0f);
    }
}
