// Publicizer: writes copies of .NET assemblies in which every type, method and field is public.
// The copies are for the C# compiler only (see eng/MLNetInternals.targets); at run time the original
// assemblies are loaded and IgnoresAccessChecksToAttribute lets the CLR accept the accesses.
// The assembly identity (name, version, public key) is unchanged, so references compiled against a copy
// bind to the original.
//
// Usage: Publicizer <output-directory> <assembly.dll>...
using Mono.Cecil;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Publicizer <output-directory> <assembly.dll>...");
    return 2;
}

string outputDirectory = args[0];
Directory.CreateDirectory(outputDirectory);

for (int i = 1; i < args.Length; i++)
{
    string input = args[i];
    string output = Path.Combine(outputDirectory, Path.GetFileName(input));
    if (Path.GetFullPath(input) == Path.GetFullPath(output))
    {
        Console.Error.WriteLine($"Publicizer: refusing to overwrite the input '{input}'.");
        return 1;
    }

    var resolver = new DefaultAssemblyResolver();
    resolver.AddSearchDirectory(Path.GetDirectoryName(Path.GetFullPath(input))!);
    using var module = ModuleDefinition.ReadModule(input, new ReaderParameters
    {
        InMemory = true,           // lets us write next to (or over) files we read
        ReadSymbols = false,
        AssemblyResolver = resolver,
    });

    int types = 0, methods = 0, fields = 0;
    foreach (TypeDefinition type in module.GetTypes()) // includes nested types
    {
        if (type.Name == "<Module>")
            continue;
        if (type.IsNested ? !type.IsNestedPublic : !type.IsPublic)
        {
            if (type.IsNested)
                type.IsNestedPublic = true;
            else
                type.IsPublic = true;
            types++;
        }
        foreach (MethodDefinition method in type.Methods)
        {
            if (!method.IsPublic)
            {
                method.IsPublic = true;
                methods++;
            }
        }
        foreach (FieldDefinition field in type.Fields)
        {
            if (!field.IsPublic)
            {
                field.IsPublic = true;
                fields++;
            }
        }
    }

    // Write to a temporary name first so an interrupted run never leaves a half-written copy that looks up to
    // date.
    string temp = output + ".tmp";
    module.Write(temp);
    File.Move(temp, output, overwrite: true);
    Console.WriteLine($"Publicizer: {Path.GetFileName(input)}: {types} types, {methods} methods, " +
        $"{fields} fields made public -> {output}");
}
return 0;
