namespace Microsoft.ML.Peft.Tests;
[TestClass]
public sealed class Smoke { [TestMethod] public void Torch() { using var t = TorchSharp.torch.ones(2); Assert.AreEqual(2f, t.sum().item<float>()); } }
