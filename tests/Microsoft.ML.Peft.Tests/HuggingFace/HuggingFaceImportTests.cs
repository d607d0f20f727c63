using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>Hand-built peft folders import and score; bad folders fail with one clear error naming what is wrong.
/// </summary>
[TestClass]
public sealed class HuggingFaceImportTests
{
    private static string _root = "";
    private static BaseModel _base = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("import");
        _base = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
    }

    private static IDataView Rows(MLContext ml) => ml.Data.LoadFromEnumerable(new[]
    {
        new Row { Sentence1 = "i love this movie" }, new Row { Sentence1 = "we do not like the hotel a lot today" },
        new Row { Sentence1 = "they hate my car" },
    });

    private static string Folder(string name) => Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..6]);

    private static HandBuiltAdapter Adapter(bool loraB = false, float[]? weight = null) =>
        new(_base.Name, loraB, weight);

    [TestMethod]
    public void HandBuiltPeftFolderImportsAndScores()
    {
        var ml = new MLContext(seed: 1);
        using var stage = ml.Peft().FromPretrained(Adapter().WriteTo(Folder("hand")), _base, HfKit.Exact());
        // A zero classifier weight leaves softmax(bias) = [0.25, 0.75] on every row, whatever the encoder gives.
        foreach (var row in HfKit.Scores(stage, Rows(ml)))
        {
            Assert.AreEqual(0.25, row[0], 1e-6);
            Assert.AreEqual(0.75, row[1], 1e-6);
        }
        var lora = (LoraConfig)stage.Method;
        Assert.AreEqual(2, lora.Rank);
        Assert.AreEqual(16.0, lora.Alpha);
        CollectionAssert.AreEqual(new[] { "value", "query" }, lora.TargetModules);
        // The labels come from config.json's id2label.
        var slots = default(VBuffer<ReadOnlyMemory<char>>);
        stage.Transform(Rows(ml)).Schema["Score"].GetSlotNames(ref slots);
        CollectionAssert.AreEqual(new[] { "neg", "pos" }, slots.DenseValues().Select(s => s.ToString()).ToArray());
    }

    [TestMethod]
    public void HandBuiltLoraWeightsChangeTheScores()
    {
        var ml = new MLContext(seed: 1);
        var weight = HfKit.Random(16, 99, 3.0);
        using var plain = ml.Peft().FromPretrained(Adapter(false, weight).WriteTo(Folder("b0")), _base,
            HfKit.Exact());
        using var adapted = ml.Peft().FromPretrained(Adapter(true, weight).WriteTo(Folder("b1")), _base,
            HfKit.Exact());
        var a = HfKit.Scores(plain, Rows(ml));
        var b = HfKit.Scores(adapted, Rows(ml));
        double largest = a.Zip(b, (x, y) => Math.Abs(x[0] - y[0])).Max();
        Assert.IsTrue(largest > 1e-3, $"the adapter's lora_B must reach the scores (difference {largest:G3})");
    }

    [TestMethod]
    public void LabelsGivenByTheUserReplaceConfigJson()
    {
        var adapter = Adapter();
        adapter.ModelConfig = null;
        var ml = new MLContext(seed: 1);
        using var stage = ml.Peft().FromPretrained(adapter.WriteTo(Folder("labels")), _base,
            HfKit.Exact(["bad", "good"]));
        var slots = default(VBuffer<ReadOnlyMemory<char>>);
        stage.Transform(Rows(ml)).Schema["Score"].GetSlotNames(ref slots);
        CollectionAssert.AreEqual(new[] { "bad", "good" }, slots.DenseValues().Select(s => s.ToString()).ToArray());
    }

    private static T Fails<T>(HandBuiltAdapter adapter, params string[] mentions) where T : Exception
    {
        string folder = adapter.WriteTo(Folder("bad"));
        var e = Assert.ThrowsExactly<T>(() => new MLContext().Peft().FromPretrained(folder, _base, HfKit.Exact()));
        foreach (var m in mentions) StringAssert.Contains(e.Message, m);
        return e;
    }

    [TestMethod]
    public void FolderWithoutAdapterConfigFails()
    {
        string folder = Folder("empty");
        Directory.CreateDirectory(folder);
        var e = Assert.ThrowsExactly<FileNotFoundException>(() =>
            new MLContext().Peft().FromPretrained(folder, _base));
        StringAssert.Contains(e.Message, "adapter_config.json");
    }

    [TestMethod]
    public void UnknownPeftTypeFails()
    {
        var a = Adapter();
        a.Config["peft_type"] = "NOT_A_METHOD";
        Fails<PeftModelFormatException>(a, "adapter_config.json", "'peft_type'", "NOT_A_METHOD");
    }

    [TestMethod]
    public void PeftTypesWithoutACounterpartAreRefusedWithTheReason()
    {
        var a = Adapter();
        a.Config["peft_type"] = "P_TUNING";
        Fails<NotSupportedException>(a, "P_TUNING", "prompt encoder");
    }

    [TestMethod]
    public void PromptLearningAdapterWithoutItsTensorFails()
    {
        // A LoRA folder relabelled PREFIX_TUNING: no prompt_embeddings.
        var a = Adapter();
        a.Config["peft_type"] = "PREFIX_TUNING";
        a.Config["num_virtual_tokens"] = 3;
        Fails<PeftModelFormatException>(a, "'prompt_embeddings'", "missing");
    }

    [TestMethod]
    public void TargetModuleThatMatchesNoLayerFails()
    {
        var a = Adapter();
        a.Config["target_modules"] = new System.Text.Json.Nodes.JsonArray("query", "value", "q_proj_missing");
        Fails<PeftModelFormatException>(a, "adapter_config.json", "'target_modules'", "q_proj_missing");
    }

    [TestMethod]
    public void TensorShapeThatDoesNotFitTheBaseFails()
    {
        var a = Adapter();
        const string Name = "base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight";
        a.Tensors[Name] = ([2, 12], new float[24]);
        Fails<PeftModelFormatException>(a, "adapter_model.safetensors", Name, "[2,12]", "[2,8]");
    }

    [TestMethod]
    public void TensorOfNoModuleFails()
    {
        var a = Adapter();
        const string Name = "base_model.model.bert.encoder.layer.0.attention.self.key.lora_A.weight";
        a.Tensors[Name] = ([2, 8], new float[16]);
        Fails<PeftModelFormatException>(a, Name);
    }

    [TestMethod]
    public void MissingClassifierFails()
    {
        var a = Adapter();
        a.Tensors.Remove("base_model.model.classifier.weight");
        Fails<PeftModelFormatException>(a, "base_model.model.classifier.weight", "modules_to_save");
    }

    [TestMethod]
    public void DifferentlyNamedBaseFailsUnlessAllowed()
    {
        var a = new HandBuiltAdapter("google-bert/bert-base-uncased", false, null);
        Fails<PeftModelFormatException>(a, "'base_model_name_or_path'", "google-bert/bert-base-uncased",
            "AllowDifferentBaseModelName");
        var options = HfKit.Exact();
        options.AllowDifferentBaseModelName = true;
        using var stage = new MLContext().Peft().FromPretrained(a.WriteTo(Folder("allowed")), _base, options);
        Assert.AreEqual(2, stage.Saved.NumOutputs);
    }

    [TestMethod]
    public void PickledAdapterIsReadWithTheNoCodeUnpickler()
    {
        var adapter = Adapter();
        string folder = adapter.WriteTo(Folder("pickle"));
        File.Delete(Path.Combine(folder, "adapter_model.safetensors"));
        var tensors = adapter.Tensors.ToDictionary(kv => kv.Key,
            kv => (TorchSharp.torch.Tensor)TorchSharp.torch.tensor(kv.Value.Data, kv.Value.Shape));
        TorchSharp.PyBridge.PyTorchPickler.PickleStateDict(Path.Combine(folder, "adapter_model.bin"),
            new System.Collections.Hashtable(tensors));
        foreach (var t in tensors.Values) t.Dispose();
        var ml = new MLContext(seed: 1);
        using var stage = ml.Peft().FromPretrained(folder, _base, HfKit.Exact());
        foreach (var row in HfKit.Scores(stage, Rows(ml))) Assert.AreEqual(0.75, row[1], 1e-6);
    }

    [TestMethod]
    public void DamagedPickleFailsNamingTheFile()
    {
        string folder = Adapter().WriteTo(Folder("badpickle"));
        File.Delete(Path.Combine(folder, "adapter_model.safetensors"));
        File.WriteAllBytes(Path.Combine(folder, "adapter_model.bin"), [0x80, 0x02, 0x7D, 0x71, 0x00, 0x2E]);
        var e = Assert.ThrowsExactly<PeftModelFormatException>(() =>
            new MLContext().Peft().FromPretrained(folder, _base));
        StringAssert.Contains(e.Message, "adapter_model.bin");
    }

    [TestMethod]
    public void FolderWithoutAdapterWeightsFails()
    {
        string folder = Adapter().WriteTo(Folder("noweights"));
        File.Delete(Path.Combine(folder, "adapter_model.safetensors"));
        var e = Assert.ThrowsExactly<FileNotFoundException>(() =>
            new MLContext().Peft().FromPretrained(folder, _base));
        StringAssert.Contains(e.Message, "adapter_model.safetensors");
    }

    [TestMethod]
    public void LabelCountThatDoesNotFitTheClassifierFails()
    {
        var a = Adapter();
        a.ModelConfig = """{"id2label": {"0": "a", "1": "b", "2": "c"}}""";
        Fails<PeftModelFormatException>(a, "2 output(s)", "a, b, c");
    }
}
