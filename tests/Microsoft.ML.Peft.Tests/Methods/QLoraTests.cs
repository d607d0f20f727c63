using System.Diagnostics;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.QLora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static Microsoft.ML.Peft.Tests.Methods.ReparamTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class QLoraTests
{
    [TestMethod]
    public void Nf4RoundTripStaysWithinHalfTheLargestLevelGap()
    {
        torch.manual_seed(1);
        foreach (long[] shape in new[] { new long[] { 384, 1536 }, [7, 13] })
        {
            using var w = randn(shape) * 0.05;
            var (packed, absmax) = NF4.Quantize(w, 64);
            long blocks = (w.numel() + 63) / 64;
            Assert.AreEqual(ScalarType.Byte, packed.dtype);
            Assert.AreEqual(blocks * 32, packed.numel(), "two codes per byte");
            Assert.AreEqual(blocks, absmax.numel());
            using var back = NF4.Dequantize(packed, absmax, shape, 64);
            CollectionAssert.AreEqual(shape, back.shape);
            using var err = (back - w).abs();
            // Per element: at most half the widest level gap (0.723 → 1.0), scaled by its block's absmax.
            var (blocked, blockAbsmax) = NF4.Blocks(err, 64);
            using var bound = absmax.unsqueeze(1) * (NF4.LargestGap / 2) + 1e-7;
            Assert.AreEqual(0L, (blocked > bound).sum().item<long>(),
                $"error above bound for {string.Join("x", shape)}");
            float meanRel = (err.mean() / w.abs().mean()).item<float>();
            Console.WriteLine($"NF4 {string.Join("x", shape)}: mean |error| / mean |w| = {meanRel:F4}, "
                + $"max error {err.max().item<float>():G3}");
            Assert.IsLessThan(0.12f, meanRel);
            packed.Dispose(); absmax.Dispose(); blocked.Dispose(); blockAbsmax.Dispose();
        }
    }

    [TestMethod]
    public void Nf4ReproducesTheLevelsExactly()
    {
        using var levels = tensor(NF4.Levels).repeat(4) * 0.5f; // one 64-block whose absmax is 0.5
        var (packed, absmax) = NF4.Quantize(levels, 64);
        using var back = NF4.Dequantize(packed, absmax, [64], 64);
        Assert.AreEqual(0f, MaxDiff(back, levels));
        // First code in the high nibble: levels 0 and 1 → byte 0x01; levels 14 and 15 → 0xEF.
        Assert.AreEqual((byte)0x01, packed[0].item<byte>());
        Assert.AreEqual((byte)0xEF, packed[7].item<byte>());
        packed.Dispose(); absmax.Dispose();
    }

    [TestMethod]
    public void Int8RoundTripStaysWithinHalfAStep()
    {
        torch.manual_seed(2);
        using var w = randn(96, 40);
        var (codes, absmax) = Int8Absmax.Quantize(w, 64);
        Assert.AreEqual(ScalarType.Int8, codes.dtype);
        using var back = Int8Absmax.Dequantize(codes, absmax, [96, 40], 64);
        using var err = (back - w).abs();
        var (blocked, _) = NF4.Blocks(err, 64);
        using var bound = absmax.unsqueeze(1) / 127 / 2 + 1e-6;
        Assert.AreEqual(0L, (blocked > bound).sum().item<long>());
        codes.Dispose(); absmax.Dispose(); blocked.Dispose();
    }

    [TestMethod]
    public void QuantizesTheLargestMiniLmMatrix()
    {
        // The largest MiniLM matrix (1536 × 384, 590k weights): quantize and dequantize without per-element loops.
        torch.manual_seed(3);
        using var w = randn(1536, 384);
        var watch = Stopwatch.StartNew();
        var (packed, absmax) = NF4.Quantize(w, 64);
        var quantize = watch.Elapsed;
        watch.Restart();
        using var back = NF4.Dequantize(packed, absmax, [1536, 384], 64);
        var dequantize = watch.Elapsed;
        // Timings are printed for information only (speed belongs in benchmarks, not in assertions).
        Console.WriteLine($"NF4 590k weights: quantize {quantize.TotalMilliseconds:F1} ms, "
            + $"dequantize {dequantize.TotalMilliseconds:F1} ms");
        CollectionAssert.AreEqual(w.shape, back.shape);
        Assert.AreEqual(1536L * 384 / 2, packed.numel(), "two 4-bit codes per byte");
        using var relative = (back - w).abs().mean() / w.abs().mean();
        Assert.IsLessThan(0.15, relative.item<float>());
        packed.Dispose(); absmax.Dispose();
    }

    [TestMethod]
    public void QuantizedEncoderTakesAboutFourAndAHalfBitsPerWeight()
    {
        foreach (var (bits, expectedRatio) in new[] { (4, 4.5 / 32), (8, 8.5 / 32) })
        {
            using var plain = Encoder(4);
            long floatBytes = ModuleSurgery.NamedModules(plain).Where(m => m.Module is Linear
                && m.Path.StartsWith("encoder.")).Sum(m => ((Linear)m.Module).weight!.numel() * 4);
            using var model = PeftModel.Create(Encoder(4), new QLoraConfig { Bits = bits }, 2);
            var quantized = ModuleSurgery.NamedModules(model).Select(m => m.Module).OfType<QuantizedLinear>().ToList();
            Assert.AreEqual(12, quantized.Count, "every encoder linear layer is quantized, targeted or not");
            Assert.IsFalse(ModuleSurgery.NamedModules(model).Any(m => m.Module is Linear
                && m.Path.StartsWith("bert.encoder.") && !m.Path.Contains(".lora_")),
                "no float32 encoder weight remains");
            double ratio = quantized.Sum(q => q.QuantizedBytes) / (double)floatBytes;
            Console.WriteLine($"{bits}-bit encoder: {quantized.Sum(q => q.QuantizedBytes)} bytes vs {floatBytes} "
                + $"float32 bytes, ratio {ratio:F4}");
            Assert.AreEqual(expectedRatio, ratio, 1e-9);
            // Codes are buffers: they are neither parameters nor trainable.
            Assert.IsFalse(model.named_parameters().Any(p => p.name.Contains("weight_quant")));
            Assert.IsTrue(model.named_buffers().Any(b => b.name.EndsWith("query.base_layer.weight_quant")));
            // ...but they still count towards the model's total, as the float32 weights they stand for.
            long plainTotal = plain.parameters().Sum(p => p.numel());
            Assert.AreEqual(plainTotal + model.CountParameters().Trainable, model.CountParameters().Total);
        }
    }

    [TestMethod]
    public void TrainableCountMatchesLoraOnMiniLmShape()
    {
        using var model = PeftModel.Create(Encoder(3, MiniLm()), new QLoraConfig(), 2);
        var (trainable, _) = model.CountParameters();
        Assert.AreEqual(6L * 2 * (384 * 8 + 8 * 384) + MiniLmHead, trainable);
        Assert.AreEqual(73_728L + MiniLmHead, trainable);
        CollectionAssert.AreEquivalent(
            new[] { "lora_A", "lora_B" },
            model.TrainableParameters().Where(p => p.Name.StartsWith("bert.")).Select(p =>
                p.Name.Split('.')[^2]).Distinct().ToArray());
    }

    [TestMethod]
    public void UntrainedModelEqualsTheDequantizedBase()
    {
        // QLoRA promises the dequantized base, not the float one: compare with a plain encoder holding the NF4 round
        // trip.
        var (ids, mask) = Batch();
        using var plain = Encoder(5);
        plain.eval();
        using var floatOutput = plain.forward(ids, mask, null);
        using (no_grad())
            foreach (var (path, module) in ModuleSurgery.NamedModules(plain)
                .Where(m => m.Module is Linear && m.Path.StartsWith("encoder.")).ToList())
            {
                var w = ((Linear)module).weight!;
                var (packed, absmax) = NF4.Quantize(w, 64);
                using var back = NF4.Dequantize(packed, absmax, w.shape, 64);
                w.copy_(back);
                packed.Dispose(); absmax.Dispose();
            }
        using var expected = plain.forward(ids, mask, null);
        using var model = PeftModel.Create(Encoder(5), new QLoraConfig { TargetModules = ["all-linear"] }, 3);
        model.eval();
        Assert.AreEqual(12, ModuleSurgery.NamedModules(model).Count(m => m.Module is QLoraLinear));
        using var actual = model.Encoder.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(actual, expected));
        float drift = MaxDiff(actual, floatOutput);
        Console.WriteLine($"max |NF4 − float32| on the tiny encoder's output: {drift:G3}");
        Assert.IsGreaterThan(0f, drift);
        Assert.IsLessThan(0.5f, drift);
    }

    [TestMethod]
    public void OptionsRoundTripThroughJsonAndValidate()
    {
        var back = (QLoraConfig)PeftMethodConfig.FromJson(new QLoraConfig { Bits = 8, BlockSize = 32,
            Rank = 4 }.ToJson());
        Assert.AreEqual(8, back.Bits);
        Assert.AreEqual(32, back.BlockSize);
        Assert.AreEqual(4, back.Rank);
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new QLoraConfig {
            Bits = 3 }.Validate()).Message, "Bits");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new QLoraConfig {
            BlockSize = 63 }.Validate()).Message, "BlockSize");
    }

    [TestMethod]
    public void SaveAndLoadGiveIdenticalScoresWithoutSavingTheCodes()
    {
        var (expected, actual, stage) = RoundTrip(new QLoraConfig { Rank = 2, Alpha = 4 });
        CollectionAssert.AreEqual(expected, actual);
        Assert.IsFalse(stage.IsMerged);
        Assert.IsTrue(Trained(stage).Keys.All(k => k.StartsWith("classifier.") || k.Contains(".lora_")),
            string.Join(", ", Trained(stage).Keys));
    }
}
