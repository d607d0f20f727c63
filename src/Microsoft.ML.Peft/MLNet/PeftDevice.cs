using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Chooses the TorchSharp device the way ML.NET's own GPU trainers do: <c>MLContext.GpuDeviceId</c> and
/// <c>FallbackToCpu</c>.
/// </summary>
internal static class PeftDevice
{
    public static Device Resolve(IHostEnvironment env, IChannel? ch = null)
    {
        int? gpu = (env as IHostEnvironmentInternal)?.GpuDeviceId;
        bool fallback = (env as IHostEnvironmentInternal)?.FallbackToCpu ?? true;
        if (gpu is null) return CPU;
        if (cuda.is_available() && gpu.Value < cuda.device_count())
        {
            ch?.Info($"Using CUDA device {gpu.Value}.");
            return new Device(DeviceType.CUDA, gpu.Value);
        }
        string why = $"MLContext.GpuDeviceId is {gpu.Value}, but TorchSharp's CUDA backend is not available " +
            "(build with -p:PeftTorchBackend=cuda on a machine with CUDA).";
        if (!fallback)
            throw new InvalidOperationException(
                why + " Set MLContext.FallbackToCpu = true to train on the CPU instead.");
        ch?.Warning(why + " Falling back to the CPU.");
        return CPU;
    }
}
