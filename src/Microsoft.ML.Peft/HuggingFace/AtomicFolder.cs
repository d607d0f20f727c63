namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// Writes a whole folder or nothing: the files go into a temporary folder beside the target, which then takes the
/// target's place (an existing target is moved aside first and restored if the swap fails). A failure while writing
/// leaves the target as it was and no temporary folder behind.
/// </summary>
internal static class AtomicFolder
{
    public static void Write(string folder, Action<string> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        string target = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        if (File.Exists(target))
            throw new IOException($"'{target}' is a file; SavePretrained writes a folder.");
        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        string name = Path.GetFileName(target);
        string temp = Path.Combine(parent, $".{name}.{Guid.NewGuid():N}.tmp");
        string aside = Path.Combine(parent, $".{name}.{Guid.NewGuid():N}.old");
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            bool existed = Directory.Exists(target);
            if (existed) Directory.Move(target, aside);
            try { Directory.Move(temp, target); }
            catch
            {
                if (existed) Directory.Move(aside, target);
                throw;
            }
            if (existed) Directory.Delete(aside, recursive: true);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }
}
