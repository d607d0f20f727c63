// ML.NET 5.0.x keeps its model save/load machinery internal (LoadableClassAttribute, ModelLoadContext, VersionInfo,
// ModelSaveContext's members). This assembly is compiled against copies of Microsoft.ML.Core/Microsoft.ML.Data whose
// internals are public (eng/MLNetInternals.targets); at run time the real assemblies are loaded and CoreCLR honours
// this attribute, skipping access checks from this assembly into the named ones.
// Microsoft.ML is pinned to 5.0.x for this reason; tests/Microsoft.ML.Peft.Tests/MLNet round-trips guard it.
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Data")]

namespace System.Runtime.CompilerServices;

/// <summary>
/// Tells the runtime to skip visibility checks from the assembly that carries it into the named assembly.
/// The runtime recognises it by full name; it is not in the reference assemblies, so each assembly declares its own.
/// </summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class IgnoresAccessChecksToAttribute : Attribute
{
    /// <summary>Creates the attribute for one assembly.</summary>
    /// <param name="assemblyName">Simple name of the assembly whose internals this assembly uses.</param>
    public IgnoresAccessChecksToAttribute(string assemblyName) => AssemblyName = assemblyName;

    /// <summary>Simple name of the assembly whose internals this assembly uses.</summary>
    public string AssemblyName { get; }
}
