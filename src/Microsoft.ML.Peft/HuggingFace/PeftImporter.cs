using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.LinearProbe;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// Reads a <c>peft</c> adapter folder for a BERT-family <c>*ForSequenceClassification</c> model: the config (method
/// options), the tensors (safetensors only: nothing in the folder is ever executed) and the labels, checked against
/// the base model tensor by tensor so that a bad folder fails here, naming the file, key or tensor.
/// </summary>
internal static class PeftImporter
{
    private const string HeadWeight = "classifier.weight";
    private const string HeadBias = "classifier.bias";

    /// <summary>The base a folder needs: the one given, or an embedded base its adapter config names.</summary>
    public static BaseModel ResolveBase(string folder, BaseModel? given)
    {
        if (given is not null) return given;
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Adapter folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, PeftFormat.AdapterConfigFile);
        if (!File.Exists(configPath)) return BaseModel.FromFolder(RequireMergedFolder(folder));
        string? recorded = AdapterConfigJson.Load(configPath).String("base_model_name_or_path");
        // Compared by Hub id first, so that only the embedded base asked for is opened.
        foreach (var package in new[] { "MiniLM", "ArcticXs" })
            if (string.Equals(recorded, PeftFormat.HubId(BaseModelKind.Embedded, package, ""),
                    StringComparison.OrdinalIgnoreCase))
                return BaseModel.Embedded(package);
        throw new ArgumentNullException("baseModel",
            $"{configPath}: base_model_name_or_path is '{recorded}', which is not an embedded base; pass the base "
            + "model (for example BaseModel.FromFolder) to FromPretrained.");
    }

    /// <summary>Reads and checks <paramref name="folder"/> against <paramref name="baseModel"/>.</summary>
    /// <param name="folder">A peft adapter folder, or a merged transformers folder (whose base is itself).</param>
    /// <param name="baseModel">The base the adapter was trained on.</param>
    /// <param name="labels">Label values in id order, or null to read <c>config.json</c>'s <c>id2label</c>.</param>
    /// <param name="allowDifferentBaseName">Accept a base whose name differs from <c>base_model_name_or_path</c>.
    /// </param>
    public static ImportedAdapter Read(string folder, BaseModel baseModel, string[]? labels,
        bool allowDifferentBaseName)
    {
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Adapter folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, PeftFormat.AdapterConfigFile);
        if (!File.Exists(configPath))
        {
            RequireMergedFolder(folder);
            return ReadMerged(folder, baseModel, labels);
        }
        var config = AdapterConfigJson.Load(configPath);
        string peftType = config.String("peft_type") ?? throw config.Error("peft_type", "is missing.");
        string? task = config.String("task_type");
        if (task is not null && task != PeftFormat.SequenceClassification)
            throw config.Error("task_type", $"is '{task}'; this library imports sequence classification adapters "
                + $"({PeftFormat.SequenceClassification}) only.");
        string? recorded = config.String("base_model_name_or_path");
        if (!allowDifferentBaseName && !PeftFormat.NamesBase(recorded, baseModel))
            throw config.Error("base_model_name_or_path", $"is '{recorded}', but the base model given is "
                + $"'{baseModel.Name}' ({PeftFormat.HubId(baseModel)}). Pass the base the adapter was trained on, "
                + "or set AllowDifferentBaseModelName to use this one anyway.");
        var architecture = baseModel.Config.Architecture;
        var (peftTensors, fileNames) = ReadTensors(folder, PeftAdapterTypes.IsPromptLearning(peftType),
            architecture);
        var method = PeftAdapterTypes.Read(peftType, config, peftTensors);
        try { method.Validate(); }
        catch (ArgumentException e)
        {
            // The options were read from the file's keys (r, lora_alpha, ...): say which file holds the bad value.
            throw new PeftModelFormatException($"{config.File}: the {peftType} options are invalid: {e.Message}", e);
        }
        var mapping = method.CreatePeftAdapterMapping();
        var trained = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        var shown = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in peftTensors)
        {
            string library = mapping.FromPeftName(name);
            trained[library] = tensor;
            shown[library] = fileNames[name];
        }
        return Finish(folder, config.File, Path.Combine(folder, PeftFormat.AdapterWeightsFile), baseModel, method,
            trained, labels, name => shown.TryGetValue(name, out var f) ? f
                : mapping.FileName(TransformersNames.ToTransformers(name, architecture)));
    }

    private static string RequireMergedFolder(string folder)
    {
        if (File.Exists(Path.Combine(folder, PeftFormat.ModelConfigFile))
            && File.Exists(Path.Combine(folder, PeftFormat.ModelWeightsFile)))
            return folder;
        throw new FileNotFoundException(
            $"'{folder}' has no {PeftFormat.AdapterConfigFile}: it is neither a peft adapter folder nor a "
            + $"transformers model folder ({PeftFormat.ModelConfigFile} + {PeftFormat.ModelWeightsFile}).",
            Path.Combine(folder, PeftFormat.AdapterConfigFile));
    }

    /// <summary>
    /// The adapter's tensors by name without their prefix (<see cref="PeftFormat.TensorPrefix"/>, or for
    /// prompt-learning types <see cref="PeftFormat.PromptLearningPrefix"/>, whose own tensor
    /// <see cref="PeftFormat.PromptEmbeddings"/> has none), from <c>adapter_model.safetensors</c> or else
    /// <c>adapter_model.bin</c>. The pickle is read by TorchSharp.PyBridge's unpickler (as <c>HfFolderSource</c> reads
    /// <c>pytorch_model.bin</c>), which rebuilds tensors and dictionaries only: nothing in the file is executed.
    /// </summary>
    /// <returns>The tensors by this library's names (see <see cref="TransformersNames"/>), and each one's name in the
    /// file, for messages.</returns>
    private static (Dictionary<string, FloatTensor> Tensors, Dictionary<string, string> FileNames) ReadTensors(
        string folder, bool promptLearning, EncoderArchitecture architecture)
    {
        string path = Path.Combine(folder, PeftFormat.AdapterWeightsFile);
        string pickle = Path.Combine(folder, PeftFormat.AdapterPickleFile);
        Dictionary<string, FloatTensor> read;
        if (File.Exists(path)) read = SafeTensors.ReadFloats(path, verifyHash: false);
        else if (File.Exists(pickle)) (path, read) = (pickle, ReadPickle(pickle));
        else
            throw new FileNotFoundException($"'{folder}' has no {PeftFormat.AdapterWeightsFile} (nor "
                + $"{PeftFormat.AdapterPickleFile}).", path);
        string prefix = promptLearning ? PeftFormat.PromptLearningPrefix : PeftFormat.TensorPrefix;
        var result = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in read)
        {
            string library;
            if (promptLearning && name == PeftFormat.PromptEmbeddings) library = name;
            else if (name.StartsWith(prefix, StringComparison.Ordinal))
                library = TransformersNames.ToLibrary(name[prefix.Length..], architecture, path, name);
            else
                throw new PeftModelFormatException($"{path}: tensor '{name}' is not under '{prefix}'"
                    + (promptLearning ? $" nor '{PeftFormat.PromptEmbeddings}'" : "")
                    + "; only adapters of the model's own modules are read.");
            result[library] = tensor;
            names[library] = name;
        }
        return (result, names);
    }

    private static Dictionary<string, FloatTensor> ReadPickle(string path)
    {
        Runtime.TorchRuntime.EnsureLoaded();
        System.Collections.Hashtable table;
        try { table = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(path); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new PeftModelFormatException($"{path}: not a PyTorch state dict this library can read "
                + $"({e.Message}).", e);
        }
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (System.Collections.DictionaryEntry entry in table)
                if (entry.Key is string name && entry.Value is Tensor t) tensors[name] = t;
            return TorchWeights.ToManaged(tensors);
        }
        finally
        {
            foreach (var value in table.Values) (value as IDisposable)?.Dispose();
        }
    }

    /// <summary>
    /// A merged <c>BertForSequenceClassification</c> folder: the folder itself is the base, the head its only trained
    /// part (a linear probe on it scores as the merged model does).
    /// </summary>
    private static ImportedAdapter ReadMerged(string folder, BaseModel baseModel, string[]? labels)
    {
        string path = Path.Combine(folder, PeftFormat.ModelWeightsFile);
        if (!string.Equals(Path.GetFullPath(baseModel.Origin), Path.GetFullPath(folder), StringComparison.Ordinal))
            throw new ArgumentException($"'{folder}' is a merged transformers model: it is its own base, so load it "
                + "without a base model (or with BaseModel.FromFolder of the same folder).", "baseModel");
        var architecture = baseModel.Config.Architecture;
        var head = SafeTensors.ReadFloats(path, verifyHash: false)
            .Select(kv => KeyValuePair.Create(TransformersNames.ToLibrary(kv.Key, architecture, path, kv.Key),
                kv.Value))
            .Where(kv => PeftModel.IsHeadParameter(kv.Key))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        return Finish(folder, Path.Combine(folder, PeftFormat.ModelConfigFile), path, baseModel,
            new LinearProbeConfig(), head, labels, name => TransformersNames.ToTransformers(name, architecture));
    }

    private static ImportedAdapter Finish(string folder, string configFile, string file, BaseModel baseModel,
        PeftMethodConfig method, Dictionary<string, FloatTensor> trained, string[]? labels,
        Func<string, string> fileName)
    {
        var architecture = baseModel.Config.Architecture;
        var pooling = TransformersNames.Pooling(architecture);
        var headLayer = TransformersNames.HeadLayer(architecture);
        if (!trained.TryGetValue(HeadWeight, out var weight) || !trained.ContainsKey(HeadBias))
            throw new PeftModelFormatException($"{file}: tensor '{fileName(HeadWeight)}' (or its "
                + "bias) is missing: the adapter must save the classifier (modules_to_save: [\"classifier\"]).");
        int outputs = weight.Rows;
        var (task, names) = Labels(folder, labels, outputs);
        if (names.Length != outputs)
            throw new PeftModelFormatException($"{file}: the classifier has {outputs} output(s), but the labels are "
                + $"{names.Length}: ({string.Join(", ", names)}).");
        if (pooling == Pooling.Pooler && !baseModel.HasPooler)
            throw new NotSupportedException($"Base model '{baseModel.Name}' has no pooler, which "
                + "BertForSequenceClassification's head reads.");
        var (trainable, total, merged) = Check(configFile, file, baseModel, method, trained, outputs, fileName,
            pooling, headLayer);
        return new ImportedAdapter(method, trained, task, names, trainable, total, merged)
        {
            Pooling = pooling, HeadLayer = headLayer,
        };
    }

    private static (PeftTask Task, string[] Labels) Labels(string folder, string[]? given, int outputs)
    {
        string path = Path.Combine(folder, PeftFormat.ModelConfigFile);
        // One output is a regression head (transformers' num_labels = 1), whatever it is called.
        if (given is not null)
            return outputs == 1 ? (PeftTask.Regression, ["LABEL_0"]) : (PeftTask.Classification, given);
        if (File.Exists(path))
        {
            var head = TransformersConfig.ReadLabels(path);
            return (head.Task, head.Labels);
        }
        // transformers' PretrainedConfig names unnamed labels LABEL_0, LABEL_1, ...; one output is regression.
        return (outputs == 1 ? PeftTask.Regression : PeftTask.Classification,
            Enumerable.Range(0, outputs).Select(i => $"LABEL_{i}").ToArray());
    }

    /// <summary>
    /// Builds the model the stage will score with, once, to check every tensor against it: known name, right shape,
    /// none missing (biases the adapter does not carry keep the base's values, as in peft). Returns the parameter
    /// counts and whether the method merges.
    /// </summary>
    private static (long Trainable, long Total, bool Merged) Check(string configFile, string file,
        BaseModel baseModel, PeftMethodConfig method, Dictionary<string, FloatTensor> trained, int outputs,
        Func<string, string> fileName, Pooling pooling, HeadLayer headLayer)
    {
        using var scope = NewDisposeScope();
        Runtime.TorchRuntime.EnsureLoaded();
        PeftModel model;
        try
        {
            model = PeftModel.CreateForInference(baseModel.CreateEncoder(withPooler: pooling == Pooling.Pooler),
                method, outputs, pooling, 0.1, PairEncoding.CrossEncoder, headLayer);
        }
        catch (ArgumentException e)
        {
            throw new PeftModelFormatException($"{configFile}: key 'target_modules' does not fit base model "
                + $"'{baseModel.Name}': {e.Message}", e);
        }
        using (model)
        {
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, tensor) in trained)
            {
                if (!parameters.TryGetValue(name, out var p))
                    throw new PeftModelFormatException($"{file}: tensor '{fileName(name)}' belongs to no module "
                        + $"of base model '{baseModel.Name}' with this adapter's {method.MethodName} layers.");
                if (!p.shape.SequenceEqual(tensor.Shape))
                    throw new PeftModelFormatException($"{file}: tensor '{fileName(name)}' has shape "
                        + $"{tensor.ShapeText}, but base model '{baseModel.Name}' needs "
                        + $"[{string.Join(",", p.shape)}].");
            }
            foreach (var (name, p) in parameters)
            {
                if (trained.ContainsKey(name) || !(PeftModel.IsHeadParameter(name) || method.IsTrainable(name)))
                    continue;
                if (!name.EndsWith(".bias", StringComparison.Ordinal) || name.Contains(".lora_"))
                    throw new PeftModelFormatException($"{file}: tensor '{fileName(name)}' is missing.");
                trained[name] = TorchWeights.ToManaged(new Dictionary<string, Tensor> { [name] = p })[name];
            }
            var torchTensors = TorchWeights.ToTorch(trained);
            try { model.LoadTrainedTensors(torchTensors); }
            finally { foreach (var t in torchTensors.Values) t.Dispose(); }
            var (trainable, total) = model.CountParameters();
            return (trainable, total, model.Merge());
        }
    }

}
