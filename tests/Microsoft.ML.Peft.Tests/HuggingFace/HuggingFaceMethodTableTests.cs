using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Tests.Onnx;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// The method table of docs/huggingface.md, over every known method: which export as which peft type, and that every
/// other one is refused with a NotSupportedException that says why (never another exception, never silently).
/// </summary>
[TestClass]
public sealed class HuggingFaceMethodTableTests
{
    private static readonly Dictionary<string, string> Exported = new(StringComparer.Ordinal)
    {
        ["lora"] = "LORA", ["dora"] = "LORA", ["adalora"] = "ADALORA", ["ia3"] = "IA3", ["full"] = "",
    };

    [TestMethod]
    public void EveryMethodExportsAsDocumentedOrSaysWhyNot()
    {
        foreach (var name in PeftMethodConfig.KnownMethods)
        {
            var method = OnnxParityKit.Default(name);
            if (Exported.TryGetValue(name, out var peftType))
            {
                var mapping = method.CreatePeftAdapterMapping();
                Assert.AreEqual(peftType, mapping.PeftType, name);
                Assert.AreEqual(name == "full", mapping.IsWholeModel, name);
                continue;
            }
            var e = Assert.ThrowsExactly<NotSupportedException>(() => method.CreatePeftAdapterMapping(), name);
            StringAssert.Contains(e.Message, "peft", name);
            if (name is not ("prefix" or "prompt"))
                StringAssert.Contains(e.Message, "SaveMergedPretrained", name);
        }
        Assert.AreEqual(17, PeftMethodConfig.KnownMethods.Count, "a new method needs a row in docs/huggingface.md");
    }
}
