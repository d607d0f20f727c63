using Microsoft.ML.Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Training;

/// <summary>The trainer's own AdamW must take exactly the steps TorchSharp's (PyTorch's) AdamW takes.</summary>
[TestClass]
public class AdamWUpdateTests
{
    [TestMethod]
    public void StepsMatchTorchSharpAdamWWithTwoGroupsAndASchedule()
    {
        torch.manual_seed(7);
        var start = new[] { randn(4, 3), randn(3), randn(2, 2) };
        var ours = start.Select(t => new Parameter(t.clone(), requires_grad: true)).ToArray();
        var theirs = start.Select(t => new Parameter(t.clone(), requires_grad: true)).ToArray();
        using var update = new AdamWUpdate([
            new AdamWUpdate.Group([ours[0], ours[1]], 2e-2, 0.01),
            new AdamWUpdate.Group([ours[2]], 5e-2, 0.0)]);
        using var reference = optim.AdamW([
            new AdamW.ParamGroup([theirs[0], theirs[1]], 2e-2, 0.9, 0.999, 1e-8, 0.01, false, false),
            new AdamW.ParamGroup([theirs[2]], 5e-2, 0.9, 0.999, 1e-8, 0.0, false, false)]);
        double[] factors = [0.5, 1.0, 0.8, 0.3, 0.0, 0.6];
        for (int step = 0; step < factors.Length; step++)
        {
            update.ZeroGrad();
            reference.zero_grad();
            Loss(ours, step).backward();
            Loss(theirs, step).backward();
            update.Step(factors[step]);
            foreach (var g in reference.ParamGroups) g.LearningRate = g.InitialLearningRate * factors[step];
            reference.step();
        }
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.IsFalse(start[i].allclose(ours[i], 1e-4, 1e-4), $"parameter {i} should have moved");
            Assert.IsTrue(ours[i].allclose(theirs[i], 1e-6, 1e-6), $"parameter {i} differs from TorchSharp's AdamW");
        }
    }

    [TestMethod]
    public void ClippingScalesTheGlobalNormToTheMaximum()
    {
        var a = new Parameter(zeros(2), requires_grad: true);
        var b = new Parameter(zeros(1), requires_grad: true);
        a.grad = tensor(new[] { 3f, 0f });
        b.grad = tensor(new[] { 4f });
        double before = AdamWUpdate.ClipGradientNorm([a, b], 1.0);
        Assert.AreEqual(5.0, before, 1e-5);
        CollectionAssert.AreEqual(new[] { 0.6f, 0f },
            a.grad!.data<float>().ToArray().Select(v => MathF.Round(v, 4)).ToArray());
        Assert.AreEqual(0.8f, b.grad!.item<float>(), 1e-4f);
        Assert.AreEqual(1.0, AdamWUpdate.ClipGradientNorm([a, b], 2.0), 1e-4, "below the maximum nothing changes");
        Assert.AreEqual(0.8f, b.grad!.item<float>(), 1e-4f);
    }

    private static Tensor Loss(Parameter[] p, int step) =>
        (p[0].sum(1) * (step + 1)).pow(2).sum() + (p[1] - 1).abs().sum() + p[2].matmul(p[2]).sum();
}
