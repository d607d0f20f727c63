using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.QLora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static Microsoft.ML.Peft.Tests.Methods.ReparamTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// The contracts every method in <see cref="PeftMethodConfig.KnownMethods"/> keeps, each at its defaults on the tiny
/// base: (a) attached but untrained, the encoder computes what the bare base does; (b) merging for scoring changes no
/// output and unmerging restores the weights, or merging is refused and changes nothing; (c) a fitted stage scores the
/// same after a save/load round trip. The cases come from the registry, so a newly registered method is covered with
/// no new test code. What a method does beyond these is tested in its own class.
/// </summary>
[TestClass]
public sealed class MethodContractTests
{
    /// <summary>Every registered method name, in a stable order.</summary>
    public static IEnumerable<object[]> Methods =>
        PeftMethodConfig.KnownMethods.Order(StringComparer.Ordinal).Select(m => new object[] { m });

    /// <summary>
    /// The methods that are not the base at init, and why: each adds virtual tokens that the real tokens attend to
    /// from the start. Their nearest honest check is that everything else they attach is the identity once the
    /// virtual tokens are set aside. The test also fails when a listed method turns out to be the identity, so the
    /// list stays true.
    /// </summary>
    private static readonly Dictionary<string, string> AddsVirtualTokens = new()
    {
        ["prefix"] = "trained key/value prefixes join every attention: the softmax is spread over them from the start",
        ["prompt"] = "virtual tokens are prepended to the input and every real token attends to them",
        ["mam"] = "its prefix part, as prefix tuning (its parallel adapters start at zero)",
        ["unipelt"] = "its gated prefix part, as prefix tuning; the gate starts near 0.5, not 0",
    };

    private static PeftMethodConfig Default(string name) =>
        PeftMethodConfig.FromJson("{\"method\":\"" + name + "\",\"options\":{}}");

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void UntrainedMethodComputesWhatTheBaseDoes(string method)
    {
        var (ids, mask) = Batch();
        using var plain = Encoder(1);
        using var model = PeftModel.Create(Encoder(1), Default(method), 3);
        plain.eval();
        model.eval();
        using var _ = no_grad();
        // A method that quantizes the frozen base (QLoRA) promises the dequantized base, not the float one.
        CopyDequantizedWeights(model, plain);
        using var expected = plain.forward(ids, mask, null);
        int promptLength = model.Encoder.PromptLength;
        using (var withTokens = model.Encoder.forward(ids, mask, null))
        using (var realPositions = withTokens[.., promptLength..])
        {
            bool addsTokens = SetVirtualTokensAside(model);
            bool listed = AddsVirtualTokens.TryGetValue(method, out var why);
            Assert.AreEqual(listed, addsTokens,
                $"{method}: AddsVirtualTokens must list exactly the methods that add virtual tokens");
            if (listed)
                Assert.IsGreaterThan(1e-4f, MaxDiff(realPositions, expected),
                    $"{method} is listed as not the identity at init ({why}), but it is: take it off the list");
        }
        using var actual = model.Encoder.forward(ids, mask, null);
        Assert.AreEqual(0f, MaxDiff(actual, expected), 1e-6f, method);
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void MergingChangesNoOutputOrIsRefusedAndChangesNothing(string method)
    {
        var (ids, mask) = Batch();
        var config = Default(method);
        using var model = PeftModel.Create(Encoder(2), config, 3);
        model.eval();
        using var _ = no_grad();
        using var initial = model.forward(ids, mask, null);
        // A trained-looking update: every trainable encoder tensor moves, so a merge has a non-zero delta to fold.
        manual_seed(5);
        var trainable = model.named_parameters()
            .Where(p => p.parameter.requires_grad && !p.name.StartsWith("classifier.", StringComparison.Ordinal))
            .ToList();
        using (var std = 0.3.ToScalar())
            foreach (var (_, p) in trainable)
            {
                using var noise = randn_like(p);
                p.add_(noise, alpha: std);
            }
        using var unmerged = model.forward(ids, mask, null);
        if (trainable.Count > 0)
            Assert.IsGreaterThan(1e-3f, MaxDiff(unmerged, initial), $"{method}: the update must matter");
        var before = model.state_dict().ToDictionary(t => t.Key, t => t.Value.detach().clone());
        try
        {
            if (config.Merge(model))
            {
                using (var merged = model.forward(ids, mask, null))
                    Assert.IsLessThan(1e-5f, MaxDiff(merged, unmerged), $"{method}: merged");
                config.Unmerge(model);
                using (var again = model.forward(ids, mask, null))
                    Assert.IsLessThan(1e-5f, MaxDiff(again, unmerged), $"{method}: unmerged again");
                foreach (var (name, t) in model.state_dict())
                    Assert.IsTrue(Close(t, before[name], 1e-6), $"{method}: unmerge must restore {name}");
            }
            else
            {
                // Refused: a no-op, so nothing may have moved.
                foreach (var (name, t) in model.state_dict())
                    Assert.IsTrue(Close(t, before[name], 0), $"{method}: a refused merge changed {name}");
                using var after = model.forward(ids, mask, null);
                Assert.AreEqual(0f, MaxDiff(after, unmerged), $"{method}: a refused merge changed the output");
            }
        }
        finally
        {
            foreach (var t in before.Values) t.Dispose();
        }
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void FittedStageScoresTheSameAfterSaveAndLoad(string method)
    {
        var (expected, actual, _) = RoundTrip(Default(method));
        Assert.IsTrue(expected.All(l => !l.Contains("NaN") && !l.Contains("Infinity")),
            string.Join("\n", expected.Take(3)));
        CollectionAssert.AreEqual(expected, actual, method);
    }

    /// <summary>
    /// True when <paramref name="a"/> and <paramref name="b"/> agree within <paramref name="tolerance"/>; integer
    /// tensors (quantized codes, position ids) must agree exactly.
    /// </summary>
    private static bool Close(Tensor a, Tensor b, double tolerance)
    {
        if (a.is_floating_point()) return a.allclose(b, rtol: 0, atol: tolerance);
        using var same = a.eq(b).all();
        return same.item<bool>();
    }

    /// <summary>
    /// Writes into <paramref name="plain"/> the weights <paramref name="model"/>'s quantized layers compute with.
    /// </summary>
    private static void CopyDequantizedWeights(PeftModel model, BertModel plain)
    {
        foreach (var (path, module) in ModuleSurgery.NamedModules(model.Encoder))
        {
            if (module is not QuantizedLinear quantized) continue;
            // A wrapped layer sits under its wrapper as base_layer; the bare base has it at the wrapper's path.
            const string Wrapped = ".base_layer";
            string plainPath = path.EndsWith(Wrapped, StringComparison.Ordinal) ? path[..^Wrapped.Length] : path;
            using var weight = quantized.DequantizedWeight();
            ((Linear)ModuleSurgery.Get(plain, plainPath)).weight!.copy_(weight);
        }
    }

    /// <summary>
    /// Removes input prompts and attention prefixes from <paramref name="model"/>; true if there were any.
    /// </summary>
    private static bool SetVirtualTokensAside(PeftModel model)
    {
        bool any = model.Encoder.Prompt is not null;
        model.Encoder.Prompt = null;
        foreach (var layer in model.Encoder.Layers)
        {
            any |= layer.attention.self.Prefix is not null;
            layer.attention.self.Prefix = null;
        }
        return any;
    }
}
