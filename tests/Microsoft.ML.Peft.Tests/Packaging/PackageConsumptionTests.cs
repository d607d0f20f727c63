using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Xml.Linq;

namespace Microsoft.ML.Peft.Tests.Packaging;

/// <summary>
/// The library as a user gets it: packed into a local folder feed, referenced by version (no ProjectReference) from a
/// fresh console project outside the solution, which trains a tiny stage, saves, loads and scores it.
/// </summary>
[TestClass]
public sealed class PackageConsumptionTests
{
    private static string Metadata(string key) =>
        typeof(PackageConsumptionTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == key).Value!;

    [TestMethod]
    public void PackedLibraryTrainsAndScoresInAFreshConsoleProject()
    {
        string repo = Metadata("RepositoryRoot"), configuration = Metadata("BuildConfiguration");
        string version = "0.0.0-citest." + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff");
        string work = Path.Combine(Path.GetTempPath(), "peft-package-" + Guid.NewGuid().ToString("N"));
        string feed = Path.Combine(work, "feed"), app = Path.Combine(work, "app");
        string cache = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"),
            "microsoft.ml.peft", version);
        Directory.CreateDirectory(app);
        try
        {
            // The library is already built in this configuration (the test project references it).
            Run(repo, "pack", "src/Microsoft.ML.Peft/Microsoft.ML.Peft.csproj", "-c", configuration, "--no-build",
                "-o", feed, $"-p:PackageVersion={version}");
            string package = Path.Combine(feed, $"Microsoft.ML.Peft.{version}.nupkg");
            Assert.IsTrue(File.Exists(package), $"dotnet pack did not write {package}");
            CheckPackageMetadata(package);

            File.WriteAllText(Path.Combine(app, "NuGet.config"), NuGetConfig(repo, feed));
            File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Microsoft.ML.Peft" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), Program);
            // Outside the repository: no Directory.Build.props or central package versions apply.
            string output = Run(app, "run", "-c", "Release");
            StringAssert.Contains(output, "SCORED 40 ROWS");
            var accuracy = double.Parse(output.Split('\n').Single(l => l.StartsWith("ACCURACY ")).Split(' ')[1],
                System.Globalization.CultureInfo.InvariantCulture);
            Assert.IsGreaterThan(0.5, accuracy, output);
            StringAssert.Contains(output, "RELOADED SCORES EQUAL");
        }
        finally
        {
            Directory.Delete(work, recursive: true);
            // One test version per run: keep the machine's package cache from collecting them.
            if (Directory.Exists(cache)) Directory.Delete(cache, recursive: true);
        }
    }

    private static void CheckPackageMetadata(string package)
    {
        using var zip = ZipFile.OpenRead(package);
        var nuspecEntry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var stream = nuspecEntry.Open();
        var nuspec = XDocument.Load(stream);
        XNamespace ns = nuspec.Root!.Name.Namespace;
        var meta = nuspec.Root.Element(ns + "metadata")!;
        Assert.AreEqual("PACKAGE.md", meta.Element(ns + "readme")?.Value);
        Assert.IsNotNull(zip.GetEntry("PACKAGE.md"), "the package README must be inside the package");
        Assert.AreEqual("MIT", meta.Element(ns + "license")?.Value);
        StringAssert.Contains(meta.Element(ns + "tags")?.Value ?? "", "LoRA");
        var dependencies = meta.Descendants(ns + "dependency").ToDictionary(
            d => d.Attribute("id")!.Value, d => d.Attribute("version")!.Value);
        // Compiled against ML.NET 5.0's internals: a 5.1 must not be accepted.
        Assert.AreEqual("[5.0.1, 5.1.0)", dependencies["Microsoft.ML"]);
        Assert.AreEqual("[0.107.0, 0.108.0)", dependencies["TorchSharp"]);
    }

    private static string NuGetConfig(string repo, string feed)
    {
        // The repository's sources (where every dependency comes from) plus the local feed.
        var config = XDocument.Load(Path.Combine(repo, "NuGet.config"));
        var sources = config.Root!.Element("packageSources")!;
        sources.Add(new XElement("add", new XAttribute("key", "local-test-feed"), new XAttribute("value", feed)));
        return config.ToString();
    }

    private static string Run(string directory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = directory, RedirectStandardOutput = true,
            RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        // A nested build must not join the test run's MSBuild node or inherit its properties.
        start.Environment.Remove("MSBuildExtensionsPath");
        start.Environment.Remove("MSBUILD_EXE_PATH");
        start.Environment.Remove("MSBuildSDKsPath");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.AreEqual(0, process.ExitCode,
            $"dotnet {string.Join(' ', args)} failed in {directory}:\n{stdout}\n{stderr.Result}");
        return stdout;
    }

    // A user's program: generated negation data, a LoRA stage with a short plan, save, load, score.
    private const string Program = """
        using Microsoft.ML;
        using Microsoft.ML.Data;
        using Microsoft.ML.Peft;
        using Microsoft.ML.Peft.MLNet;

        var ml = new MLContext(seed: 1);
        var rng = new Random(1);
        string[] good = ["love", "like", "enjoy", "adore"], bad = ["hate", "dislike", "loathe", "detest"];
        Row Make()
        {
            bool positive = rng.Next(2) == 0;
            var verbs = positive ? good : bad;
            return new Row { Label = positive ? "positive" : "negative",
                Text = $"I really {verbs[rng.Next(verbs.Length)]} this movie" };
        }
        var train = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 80).Select(_ => Make()).ToList());
        var test = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 40).Select(_ => Make()).ToList());
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Peft().TextClassification(new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 2, BatchSize = 16,
                MaxSequenceLength = 16,
            }));
        var model = pipeline.Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Console.WriteLine(FormattableString.Invariant($"ACCURACY {metrics.MicroAccuracy:F3}"));
        string path = Path.Combine(Path.GetTempPath(), $"peft-package-{Guid.NewGuid():N}.zip");
        ml.Model.Save(model, train.Schema, path);
        var loaded = ml.Model.Load(path, out _);
        File.Delete(path);
        float[] Scores(ITransformer t) => ml.Data.CreateEnumerable<Scored>(t.Transform(test), reuseRowObject: false)
            .SelectMany(s => s.Score).ToArray();
        var before = Scores(model);
        var after = Scores(loaded);
        Console.WriteLine($"SCORED {before.Length / 2} ROWS");
        if (before.Zip(after).All(p => Math.Abs(p.First - p.Second) < 1e-5f))
            Console.WriteLine("RELOADED SCORES EQUAL");

        public sealed class Row
        {
            public string Label { get; set; } = "";
            public string Text { get; set; } = "";
        }

        public sealed class Scored
        {
            public float[] Score { get; set; } = [];
        }
        """;
}
