// The test assembly hosts a PEFT transformer of its own (TinyTextScorer), registered with ML.NET like the library's:
// it is compiled against ML.NET internals (the project imports eng/MLNetInternals.targets) and needs the runtime to
// skip access checks into Microsoft.ML.Core/Data. The attribute class is the library's internal one, visible here
// through InternalsVisibleTo; the runtime recognises it by its full name, whichever assembly declares it.
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Data")]
