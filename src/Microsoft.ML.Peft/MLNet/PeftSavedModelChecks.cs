using System.Text.Json;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Checks a loaded stage's saved fields against the rules its options had at Fit (<see cref="PeftTextOptions"/>'s
/// and the method's <c>Validate</c>), so that a header written by older code (no checksum) or by a bug cannot load
/// into a stage that fails later with an unrelated message, or scores silently wrong.
/// </summary>
internal static class PeftSavedModelChecks
{
    /// <summary>Throws <see cref="PeftModelFormatException"/> naming <paramref name="entry"/> and the first bad
    /// field.</summary>
    /// <returns>The method configuration, parsed and validated.</returns>
    internal static PeftMethodConfig Validate(PeftSavedModel s, string entry)
    {
        void Check(bool ok, string field, string message)
        {
            if (!ok)
                throw new PeftModelFormatException($"{entry}: field '{field}' {message}");
        }

        Check(s.FormatVersion == 1, nameof(s.FormatVersion),
            $"is {s.FormatVersion}; this library reads PEFT model format 1 (a newer library wrote it, or it is " +
                $"damaged).");
        Check(Enum.IsDefined(s.Task), nameof(s.Task), $"has unknown value {(int)s.Task}.");
        Check(s.Pooling is Pooling.Cls or Pooling.Mean or Pooling.Pooler, nameof(s.Pooling),
            $"must be Cls, Mean or Pooler (resolved at Fit), got {s.Pooling}.");
        Check(Enum.IsDefined(s.PairEncoding) && s.PairEncoding != PairEncoding.Auto, nameof(s.PairEncoding),
            $"must be resolved at Fit, got {s.PairEncoding}.");
        Check(Enum.IsDefined(s.HeadLayer), nameof(s.HeadLayer), $"has unknown value {(int)s.HeadLayer}.");
        Check(s.HeadLayer == HeadLayer.None
              || (s.Pooling == Pooling.Cls && s.PairEncoding == PairEncoding.CrossEncoder), nameof(s.HeadLayer),
            $"({s.HeadLayer}) needs Pooling Cls and cross-encoded pairs, got {s.Pooling} and {s.PairEncoding}.");
        Check(Enum.IsDefined(s.Precision), nameof(s.Precision), $"has unknown value {(int)s.Precision}.");
        Check(Enum.IsDefined(s.TokenizerKind), nameof(s.TokenizerKind), $"has unknown value {(int)s.TokenizerKind}.");
        Check(s.HeadDropout is >= 0 and < 1, nameof(s.HeadDropout), $"must be in [0, 1), got {s.HeadDropout}.");
        Check(s.MaxSequenceLength >= 8, nameof(s.MaxSequenceLength), $"must be at least 8, got {s.MaxSequenceLength}.");
        var longText = s.LongText?.Problem(s.MaxSequenceLength);
        Check(longText is null, "LongText." + longText?.Field, longText?.Message ?? "");
        Check(s.TokenBudget == 0 || s.TokenBudget >= s.MaxSequenceLength, nameof(s.TokenBudget),
            $"must be 0 or at least MaxSequenceLength ({s.MaxSequenceLength}), got {s.TokenBudget}.");
        Check(s.NumberOfThreads is null or >= 1, nameof(s.NumberOfThreads), $"must be at least 1, got " +
            $"{s.NumberOfThreads}.");
        Check(double.IsFinite(s.LabelShift), nameof(s.LabelShift), $"must be finite, got {s.LabelShift}.");
        Check(double.IsFinite(s.LabelScale) && s.LabelScale > 0, nameof(s.LabelScale),
            $"must be finite and positive, got {s.LabelScale}.");
        Check(!string.IsNullOrWhiteSpace(s.ScoreColumn), nameof(s.ScoreColumn), "must name a column.");
        Check(s.TrainableParameters >= 0 && s.TotalParameters >= s.TrainableParameters, nameof(s.TotalParameters),
            $"({s.TotalParameters}) must be at least TrainableParameters ({s.TrainableParameters}).");
        CheckLabels(s, Check);
        CheckBase(s.Base, Check);
        Check(s.TokenizerFiles.Length > 0 && s.TokenizerFiles.Distinct(StringComparer.Ordinal).Count()
              == s.TokenizerFiles.Length, nameof(s.TokenizerFiles), "must list distinct tokenizer files.");
        foreach (var file in s.TokenizerFiles)
            Check(IsStreamName(PeftTextTransformer.TokenizerStreamPrefix + file), nameof(s.TokenizerFiles),
                $"holds an invalid file name '{file}'.");
        var method = ParseMethod(s.MethodJson, entry);
        if (method.ReservedPositions > 0)
        {
            // peft-layout prompts take positions from the text; an edited length would index past the embeddings.
            int room = method.TextPositions(Modeling.EncoderConfig.FromJson(s.EncoderConfigJson));
            Check(s.MaxSequenceLength <= room, nameof(s.MaxSequenceLength),
                $"({s.MaxSequenceLength}) exceeds the {room} positions the method's {method.ReservedPositions} "
                + "virtual tokens leave the text.");
        }
        return method;
    }

    private static void CheckLabels(PeftSavedModel s, Action<bool, string, string> check)
    {
        if (s.Task == PeftTask.Regression)
        {
            check(s.NumOutputs == 1, nameof(s.NumOutputs), $"must be 1 for regression, got {s.NumOutputs}.");
            check(s.Labels is null, nameof(s.Labels), "must be absent for regression.");
            return;
        }
        check(!string.IsNullOrWhiteSpace(s.PredictedLabelColumn) && s.PredictedLabelColumn != s.ScoreColumn,
            nameof(s.PredictedLabelColumn), "must name a column other than the score column.");
        check(s.Labels is not null, nameof(s.Labels), "are missing for classification.");
        var labels = s.Labels!;
        check(s.NumOutputs >= 1 && labels.Count == s.NumOutputs, "Labels.Values",
            $"hold {labels.Count} value(s), but NumOutputs is {s.NumOutputs}.");
        check(labels.Values.Distinct(StringComparer.Ordinal).Count() == labels.Count, "Labels.Values",
            $"must be distinct, got ({string.Join(", ", labels.Values)}).");
        check(labels.ValuesParse(), "Labels.ItemType",
            $"'{labels.ItemType}' is unknown or does not fit the values ({string.Join(", ", labels.Values)}).");
    }

    private static void CheckBase(BaseModelRecord b, Action<bool, string, string> check)
    {
        check(Enum.IsDefined(b.Kind), "Base.Kind", $"has unknown value {(int)b.Kind}.");
        check(!string.IsNullOrWhiteSpace(b.Name), "Base.Name", "must name the base model.");
        check(b.Sha256.Length == 64 && b.Sha256.All(char.IsAsciiHexDigit), "Base.Sha256",
            $"must be 64 hexadecimal digits, got '{b.Sha256}'.");
        check(b.Kind == BaseModelKind.Embedded || b.WeightsStored || !string.IsNullOrWhiteSpace(b.Origin),
            "Base.Origin",
            "must name the base model's file or folder when its weights are not stored.");
    }

    private static PeftMethodConfig ParseMethod(string json, string entry)
    {
        try
        {
            var method = PeftMethodConfig.FromJson(json);
            method.Validate();
            return method;
        }
        catch (Exception ex) when (ex is JsonException or FormatException or ArgumentException
                                       or InvalidOperationException or NullReferenceException)
        {
            throw new PeftModelFormatException($"{entry}: field 'MethodJson' is invalid: {ex.Message}", ex);
        }
    }

    private static bool IsStreamName(string name)
    {
        try
        {
            PeftModelWriter.CheckStreamName(name);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
