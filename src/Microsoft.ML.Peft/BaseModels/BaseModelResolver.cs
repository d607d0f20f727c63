using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// Rebuilds the base model a saved model zip records: the embedded package, the ONNX file or folder it references
/// (which must still have the SHA-256 the model was trained on), or the weights stored in the zip.
/// </summary>
internal static class BaseModelResolver
{
    /// <summary>The base model <paramref name="record"/> describes, read through <paramref name="reader"/>.</summary>
    /// <exception cref="FileNotFoundException">A referenced ONNX file no longer exists.</exception>
    /// <exception cref="DirectoryNotFoundException">A referenced model folder no longer exists.</exception>
    /// <exception cref="InvalidDataException">The referenced base is not the one the model was trained on.</exception>
    public static BaseModel Resolve(PeftModelReader reader, BaseModelRecord record)
    {
        BaseModel found;
        switch (record.Kind)
        {
            case BaseModelKind.Embedded:
                found = BaseModel.Embedded(record.Origin);
                break;
            case BaseModelKind.Onnx when !record.WeightsStored:
                if (!File.Exists(record.Origin))
                    throw new FileNotFoundException(
                        $"This model references its base ONNX file '{record.Origin}' (sha256 {record.Sha256}), which " +
                        "no longer exists. Put it back, or save the model with StoreBaseModelWeights = true.",
                        record.Origin);
                found = BaseModel.FromOnnx(record.Origin, record.OriginVocabPath!, record.Name, record.DoLowerCase);
                break;
            case BaseModelKind.Folder when !record.WeightsStored:
                if (!Directory.Exists(record.Origin))
                    throw new DirectoryNotFoundException(
                        $"This model references its base model folder '{record.Origin}' (sha256 {record.Sha256}), " +
                        "which no longer exists. Put it back, or save the model with StoreBaseModelWeights = true.");
                found = BaseModel.FromFolder(record.Origin, record.Name);
                break;
            default:
                return Stored(reader, record);
        }
        if (!string.Equals(found.Sha256, record.Sha256, StringComparison.OrdinalIgnoreCase))
            throw new InvalidDataException(
                $"Base model '{record.Name}' ({found.Source}) has sha256 {found.Sha256}, but this model was trained " +
                $"on sha256 {record.Sha256}. The fine-tuned weights only fit the exact base they were trained on.");
        return found;
    }

    private static BaseModel Stored(PeftModelReader reader, BaseModelRecord record)
    {
        const string StreamName = PeftTextTransformer.BaseStream;
        Dictionary<string, Onnx.FloatTensor>? weights = null;
        reader.ReadStream(StreamName,
            r => weights = SafeTensors.ReadFloats(r.BaseStream, StreamName, SafeTensors.HashCheck.WhenRecorded));
        var configJson = reader.ReadOptions<PeftSavedModel>().EncoderConfigJson;
        // The stage reads its tokenizer from its own entries, so the stored base needs no vocabulary.
        return BaseModel.FromWeights(record.Name, record.Sha256, EncoderConfig.FromJson(configJson), weights!, [],
                                     record.VocabFileName, record.DoLowerCase, record.Origin);
    }
}
