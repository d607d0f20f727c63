using Microsoft.ML;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>
/// Damage to any entry a PEFT stage writes into a model zip either fails the load with a
/// <see cref="PeftModelFormatException"/> that names the entry, or (only for bytes the format ignores) leaves the
/// scores exactly as they were. Entries are re-zipped with a valid CRC, as after an edit or damage before zipping.
/// </summary>
[TestClass]
public sealed class ModelFileFuzzTests
{
    private const int FlipsPerEntry = 64;

    public TestContext TestContext { get; set; } = null!;

    public static IEnumerable<object[]> StageEntries =>
        new[] { "Model.key", "Trained.safetensors", "Tokenizer.vocab.txt", "Tokenizer.tokenizer_config.json",
            "Base.safetensors" }
        .Select(e => new object[] { e });

    [TestMethod]
    [DynamicData(nameof(StageEntries))]
    public void FlippedBitsAndTruncation_FailNamingTheEntry_OrScoreAsBefore(string file)
    {
        var model = ZipSurgery.Model;
        string entry = model.StageDirectory + "/" + file;
        var original = ZipSurgery.Entries(model.Zip)[entry];
        var rng = new Random(file.Length * 7919 + 17);
        var damaged = new List<(string What, int At, byte[] Content)>();
        for (int i = 0; i < FlipsPerEntry; i++)
        {
            int at = rng.Next(original.Length), bit = rng.Next(8);
            var content = (byte[])original.Clone();
            content[at] ^= (byte)(1 << bit);
            damaged.Add(($"bit {bit} of byte {at}", at, content));
        }
        foreach (int keep in new[] { 0, original.Length / 3, original.Length - 1 })
            damaged.Add(($"truncated to {keep} bytes", -1, original[..keep]));

        // ML.NET's own header (before and after the stage's body) is read by ML.NET before the stage's loader runs.
        (long bodyStart, long bodyEnd) = file == "Model.key" ? Body(original) : (0, original.Length);
        string path = Path.Combine(Path.GetTempPath(), $"peft-fuzz-{Guid.NewGuid():N}.zip");
        var failures = new List<string>();
        int rejected = 0, unchanged = 0;
        try
        {
            foreach (var (what, at, content) in damaged)
            {
                File.WriteAllBytes(path, ZipSurgery.Replace(model.Zip, entry, content));
                bool inBody = at >= bodyStart && at < bodyEnd;
                string? problem = Outcome(path, entry, inBody, ref rejected, ref unchanged);
                if (problem is not null)
                    failures.Add($"{what}: {problem}");
            }
        }
        finally
        {
            File.Delete(path);
        }
        TestContext.WriteLine($"{entry}: {rejected} rejected, {unchanged} scored as before, {failures.Count} wrong.");
        Assert.IsEmpty(failures, string.Join("\n", failures));
        // Most damage must be caught: bytes a format ignores are few.
        Assert.IsGreaterThan(damaged.Count / 2, rejected);
    }

    /// <summary>
    /// Through the library's loader the error is a <see cref="PeftModelFormatException"/> naming the entry; through
    /// ML.NET's own <c>Model.Load</c> it is inside the exception chain wherever the stage's own code reads the bytes.
    /// </summary>
    private static string? Outcome(string path, string entry, bool inBody, ref int rejected, ref int unchanged)
    {
        var ml = new MLContext(1);
        List<string> scores;
        try
        {
            scores = ZipSurgery.Score(PeftModelIO.Load(ml, path, out _));
        }
        catch (PeftModelFormatException ex)
        {
            if (!ex.Message.Contains(entry, StringComparison.Ordinal))
                return $"PeftModelIO.Load does not name the entry: {ex.Message}";
            var raw = Assert.Throws<Exception>(() => ml.Model.Load(path, out _));
            var peft = ZipSurgery.Chain(raw).OfType<PeftModelFormatException>().FirstOrDefault();
            if (inBody && (peft is null || !peft.Message.Contains(entry, StringComparison.Ordinal)))
                return $"ml.Model.Load hides the cause: {Describe(raw)}";
            rejected++;
            return null;
        }
        catch (Exception ex)
        {
            return $"PeftModelIO.Load threw {Describe(ex)}";
        }
        if (!scores.SequenceEqual(ZipSurgery.Model.Scores))
            return $"loaded and scored differently: {scores[0]} instead of {ZipSurgery.Model.Scores[0]}";
        unchanged++;
        return null;
    }

    /// <summary>Where the stage's own bytes lie in its Model.key: ML.NET's header stores FpModel and CbModel at 24 and
    /// 32.</summary>
    private static (long Start, long End) Body(byte[] key)
    {
        long start = BitConverter.ToInt64(key, 24);
        return (start, start + BitConverter.ToInt64(key, 32));
    }

    private static string Describe(Exception ex)
        => string.Join(" -> ", ZipSurgery.Chain(ex).Select(e => $"{e.GetType().Name}: {e.Message}"));
}
